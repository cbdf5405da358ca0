-- A pattern's usage over time (GET .../{pattern_id}/timeseries) and usage per weekday and
-- hour of day (GET .../heatmap, .../{pattern_id}/heatmap), from the hourly buckets and the
-- daily ones they are rolled up into (lua/routes/history.lua declares the routes).
local stats = require("pt.stats")
local H = require("pt.history")

local null = pt.null

local M = {}

local MAX_BUCKETS = 10000
local DEFAULT_SPAN = { hour = 7 * H.DAY, day = 30 * H.DAY }

-- Hourly buckets of days [$2, $3) (day numbers since 1970-01-01) and the daily buckets of those
-- days, as (daily, t = bucket start in epoch seconds, c). Both scans are PK ranges.
local SERIES = [[
SELECT false AS daily, extract(epoch FROM hour)::bigint AS t, usage_count AS c
  FROM pattern_usage_hourly
 WHERE pattern_id = $1
   AND hour >= to_timestamp($2::bigint * 86400) AND hour < to_timestamp($3::bigint * 86400)
UNION ALL
SELECT true, (day - DATE '1970-01-01')::bigint * 86400, usage_count
  FROM pattern_usage_daily
 WHERE pattern_id = $1
   AND day >= DATE '1970-01-01' + $2::int AND day < DATE '1970-01-01' + $3::int]]

function M.timeseries(req)
    local bucket = req.args.bucket
    local size = bucket == "hour" and H.HOUR or H.DAY
    local now = pt.now()
    local to = H.time_arg("to", req.args.to, (math.floor(now / size) + 1) * size)
    local from = H.time_arg("from", req.args.from, to - DEFAULT_SPAN[bucket])
    if from >= to then
        H.fail422("to", "to must be later than from", "value_error.range")
    end
    local lo = math.floor(from / size) * size
    local hi = math.ceil(to / size) * size
    if lo < H.TIME_MIN or hi >= H.TIME_END then
        -- e.g. the default from 30 days before a to in January of year 1
        H.fail422(lo < H.TIME_MIN and "from" or "to", "the buckets must lie in years 1 to 9999",
            "value_error.range")
    end
    local n = (hi - lo) // size
    if n > MAX_BUCKETS then
        H.fail422("to", "at most " .. MAX_BUCKETS .. " buckets (" .. n .. " asked): shorten " ..
            "the range or use bucket=day", "value_error.range")
    end
    H.need_pattern(req.params.pattern_id)
    local day_lo, day_hi = lo // H.DAY, -((-hi) // H.DAY)
    local rows = db.query(SERIES, req.params.pattern_id, day_lo, day_hi)
    local hourly, daily = {}, {}
    for _, r in ipairs(rows) do
        local key = bucket == "hour" and not r.daily and r.t or (r.t // H.DAY) * H.DAY
        if r.daily then
            daily[key] = (daily[key] or 0) + r.c
        else
            hourly[key] = (hourly[key] or 0) + r.c
        end
    end
    local out = { pattern_id = req.params.pattern_id, bucket = bucket, from = H.iso(lo),
        to = H.iso(hi), points = pt.array() }
    local total = 0
    if bucket == "day" then
        for i = 0, n - 1 do
            local t = lo + i * size
            local c = (hourly[t] or 0) + (daily[t] or 0)
            total = total + c
            out.points[i + 1] = { start = H.iso(t), usage_count = c }
        end
    else
        -- A day held (partly) as a daily bucket cannot be split into hours: its hours are null
        -- and its whole usage (daily + any hourly rows of late events) is in rolled_up.
        out.rolled_up = pt.array()
        local days = {}
        for d, _ in pairs(daily) do
            days[#days + 1] = d
        end
        table.sort(days)
        for _, d in ipairs(days) do
            local c = daily[d]
            for h = d, d + H.DAY - H.HOUR, H.HOUR do
                c = c + (hourly[h] or 0)
            end
            out.rolled_up[#out.rolled_up + 1] = { day = H.date(d), usage_count = c }
        end
        for i = 0, n - 1 do
            local t = lo + i * size
            local c = null
            if not daily[(t // H.DAY) * H.DAY] then
                c = hourly[t] or 0
                total = total + c
            end
            out.points[i + 1] = { start = H.iso(t), usage_count = c }
        end
        if #days > 0 then
            out.resolution_note = "days older than the hourly retention are held as daily " ..
                "buckets: their hours are null and their usage is in rolled_up (ask bucket=day " ..
                "for an exact series)"
        end
    end
    out.total = total
    return out
end

local DAY_NAMES = { "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday" }

-- Usage per (weekday, hour of day) in the tz offset $2 (seconds) over the last $1 days up to the
-- end of the current UTC hour, from hourly buckets; plus the usage of daily buckets in that
-- range, which cannot be placed in hours. One pattern's come from its buckets (match selects
-- them); the overall one from the per-hour and per-day totals the flush and the rollup keep
-- (sql/008_totals.sql: the same sums, without reading every pattern's buckets). Weekdays count
-- from Sunday = 0, as PostgreSQL's dow; 1970-01-01 was a Thursday (4).
local function heatmap_sql(hourly, daily, match)
    return ([[
SELECT w.t1, w.t0, g.dow, g.hod, g.c,
       (SELECT coalesce(sum(u.usage_count), 0)::bigint FROM %s u
         WHERE %s AND u.day >= (w.t1 AT TIME ZONE 'UTC')::date
           AND u.day <= (w.t0 AT TIME ZONE 'UTC')::date) AS daily
  FROM %s
  LEFT JOIN LATERAL (
       SELECT ((e / 86400 + 4) %% 7)::int AS dow, (e / 3600 %% 24)::int AS hod, sum(c)::bigint AS c
         FROM (SELECT extract(epoch FROM u.hour)::bigint + $2::bigint AS e, u.usage_count AS c
                 FROM %s u
                WHERE %s AND u.hour >= w.t1 AND u.hour < w.t0) s
        GROUP BY 1, 2) g ON true]]):format(daily, match, stats.WINDOWS, hourly, match)
end
local HEATMAP_ALL = heatmap_sql("usage_hourly_totals", "usage_daily_totals", "true")
local HEATMAP_ONE = heatmap_sql("pattern_usage_hourly", "pattern_usage_daily", "u.pattern_id = $3")

function M.heatmap(req, pattern_id)
    local offset, tz = H.tz_arg(req.args.tz)
    if pattern_id then
        H.need_pattern(pattern_id)
    end
    local rows = pattern_id and db.query(HEATMAP_ONE, req.args.days, offset, pattern_id)
        or db.query(HEATMAP_ALL, req.args.days, offset)
    local matrix = pt.array()
    for d = 1, 7 do
        local row = pt.array()
        for h = 1, 24 do
            row[h] = 0
        end
        matrix[d] = row
    end
    local out = { pattern_id = pattern_id, tz = tz, days = req.args.days,
        day_names = pt.array(DAY_NAMES), matrix = matrix }
    local total, max = 0, 0
    for _, r in ipairs(rows) do
        out.from, out.to = r.t1, r.t0
        out.daily_usage_not_shown = r.daily
        if r.c ~= null then
            matrix[r.dow + 1][r.hod + 1] = r.c
            total = total + r.c
            max = math.max(max, r.c)
        end
    end
    out.total, out.max = total, max
    if out.daily_usage_not_shown > 0 then
        out.resolution_note = "part of this range is older than the hourly retention and held " ..
            "as daily buckets, which cannot be placed in hours: that usage " ..
            "(daily_usage_not_shown) is not in the matrix"
    end
    return out
end

return M
