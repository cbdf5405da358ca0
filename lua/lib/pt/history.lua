-- Helpers of the history routes (lua/routes/history.lua, lua/routes/agents.lua): parameter
-- checks that the router's declarations cannot express (times, time zones), FastAPI-shaped 422
-- answers, rounding, array literals for bound parameters, the co-occurrence measures and the
-- expected lifetime of a pattern per pattern_type. No route and no SQL of one route lives here.
local M = {}

local floor = math.floor

M.HOUR = 3600
M.DAY = 86400

-- Expected lifetime of a pattern, per pattern_type, in days: a registered, active pattern never
-- used this long after its created_at is "potentially stale". Types not listed get `default`.
-- From the config key pattern_lifetime_days, read at each call so a reload applies.
setmetatable(M, { __index = function(_, k)
    if k == "LIFETIME_DAYS" then
        return pt.lifetime_days()
    end
end })

-- Answers 422 as the router does for a declared parameter: {"detail": [{loc, msg, type}]}.
function M.fail422(param, msg, typ)
    pt.fail(422, pt.array({ { loc = pt.array({ "query", param }), msg = msg, type = typ } }))
end

-- A query string decodes "+" to a space, so "+05:30" sent unencoded arrives as " 05:30": a
-- leading space before an offset can only have been a "+".
local function plus_back(s)
    return (s:gsub(" (%d%d:?%d%d)$", "+%1"))
end

-- The query parameter `param` (raw text or nil) as seconds since the epoch, or `default`.
-- Fails with 422 when it is not an ISO-8601 time (date-only and offset-less times are UTC).
function M.time_arg(param, raw, default)
    if raw == nil then
        return default
    end
    local t = pt.parse_time(plus_back(raw))
    if t == nil then
        M.fail422(param, "invalid datetime format (ISO-8601, e.g. 2025-11-04T15:00:00Z; " ..
            "send + as %2B)", "value_error.datetime")
    end
    return t
end

-- tz=±HH:MM (already matched by the route's pattern) as an offset in seconds; 422 beyond ±14:00.
function M.tz_arg(raw)
    local sign, h, m = plus_back(raw):match("^([+-])(%d%d):(%d%d)$")
    h, m = tonumber(h), tonumber(m)
    if h == nil or m > 59 or h * 60 + m > 14 * 60 then
        M.fail422("tz", "time zone offset must be between -14:00 and +14:00", "value_error.tz")
    end
    local secs = (h * 60 + m) * 60
    return sign == "-" and -secs or secs, string.format("%s%02d:%02d", sign, h, m)
end

-- The route declaration of tz, shared by both heatmaps.
M.TZ_PARAM = { name = "tz", type = "string", default = "+00:00", pattern = "^[+%- ]%d%d:%d%d$",
    pattern_text = "+HH:MM or -HH:MM", openapi_pattern = "^[+-][0-9]{2}:[0-9]{2}$",
    description = "UTC offset the hours and weekdays are shown in, e.g. +05:30 (send + as %2B)." }

-- ISO-8601 UTC of whole seconds since the epoch, as the database's times look. The year has
-- four digits (os.date's %Y does not pad years before 1000); callers keep to years 1..9999.
-- The proleptic Gregorian date of a day number (days since 1970-01-01), by arithmetic (H.
-- Hinnant's civil_from_days): a time series formats hundreds of times per answer, and
-- os.date("!*t") built a table for each (a third of a timeseries answer's time in Lua).
local function civil(z)
    z = z + 719468
    local era = z // 146097
    local doe = z - era * 146097
    local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    local mp = (5 * doy + 2) // 153
    local d = doy - (153 * mp + 2) // 5 + 1
    local m = mp < 10 and mp + 3 or mp - 9
    return yoe + era * 400 + (m <= 2 and 1 or 0), m, d
end

-- Seconds since the epoch (an integer) as ISO-8601 UTC, e.g. 2026-11-27T13:00:00Z.
function M.iso(secs)
    local days, s = secs // 86400, secs % 86400
    local y, m, d = civil(days)
    return string.format("%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, s // 3600, s % 3600 // 60,
        s % 60)
end

function M.date(secs)
    local y, m, d = civil(secs // 86400)
    return string.format("%04d-%02d-%02d", y, m, d)
end

-- The times pt.parse_time accepts, [0001-01-01T00:00:00Z, 10000-01-01T00:00:00Z), as seconds.
M.TIME_MIN, M.TIME_END = -62135596800, 253402300800

-- x rounded half up to `digits` decimals, as a float (JSON keeps it a number with a point).
function M.round(x, digits)
    local s = 10 ^ digits
    return floor(x * s + 0.5) / s
end

-- A text[] literal of a Lua list (every element quoted), for a bound parameter.
function M.text_array(list)
    local parts = {}
    for i, v in ipairs(list) do
        parts[i] = '"' .. v:gsub('[\\"]', "\\%0") .. '"'
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

function M.int_array(list)
    local parts = {}
    for i, v in ipairs(list) do
        parts[i] = string.format("%d", v)
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

-- Lift and Jaccard index of a pair seen together `both` times, of patterns used `a` and `b`
-- times, among `n` events that referenced a pattern: lift = both * n / (a * b) (1 = as often as
-- chance), jaccard = both / (a + b - both). Rounded to 6 decimals; null when undefined.
function M.measures(both, a, b, n)
    local lift, jaccard = pt.null, pt.null
    if a > 0 and b > 0 and n > 0 then
        lift = M.round(both * n / (a * b), 6)
    end
    if a + b - both > 0 then
        jaccard = M.round(both / (a + b - both), 6)
    end
    return lift, jaccard
end

-- Events with at least one pattern (the N of lift) and events whose pairs were not recorded.
M.EVENT_TOTALS = [[
SELECT coalesce(sum(events_with_patterns), 0)::bigint AS events_with_patterns,
       coalesce(sum(events_over_cooccurrence_limit), 0)::bigint AS events_over_cooccurrence_limit
  FROM usage_topic_stats]]

-- Fails with 404 unless the catalog (registered or seen in events) holds pattern_id.
function M.need_pattern(pattern_id)
    local rows = db.query([[SELECT coalesce(usage_count, 0)::bigint AS usage_count
                              FROM pattern_lineage_nodes WHERE pattern_id = $1]], pattern_id)
    if #rows == 0 then
        pt.fail(404, "Pattern not found: " .. pattern_id)
    end
    return rows[1]
end

-- The effective lifetime table: LIFETIME_DAYS, or `override` days for every type.
function M.lifetimes(override)
    local out = { default = override or M.LIFETIME_DAYS.default, by_type = {} }
    local types, days = {}, {}
    if not override then
        for t, _ in pairs(M.LIFETIME_DAYS.by_type) do
            types[#types + 1] = t
        end
        table.sort(types)
        for i, t in ipairs(types) do
            days[i] = M.LIFETIME_DAYS.by_type[t]
            out.by_type[t] = days[i]
        end
    end
    return out, types, days
end

return M
