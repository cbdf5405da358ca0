-- PatternUsageStats, the seed's response model, built from pattern_lineage_nodes, the usage
-- buckets and pattern_agents (a pattern's agents: used_by_agents); and the trend rule with its
-- windows. Shared by the usage and history routes so every
-- endpoint reports a pattern, and a trend, the same way.
local M = {}

-- The trend windows of a request, as a one-row subquery `w`: t0 = the end of the current UTC
-- hour, t1 = t0 - window_days, t2 = t0 - 2 * window_days. The last window is [t1, t0), the one
-- before [t2, t1). $1 is always window_days.
M.WINDOWS = [[
(SELECT z.t0, z.t0 - make_interval(days => $1::int) AS t1,
        z.t0 - make_interval(days => 2 * $1::int) AS t2
   FROM (SELECT date_trunc('hour', now()) + interval '1 hour' AS t0) z) w]]

-- Usage rows (pattern_id, t, c, daily) between w.t2 and w.t0 for the patterns `match` selects
-- (an SQL condition on alias u, e.g. "u.pattern_id = n.pattern_id", or "true"): the hourly
-- buckets, and the daily buckets of days older than the hourly retention placed at their start
-- (00:00 UTC), since their hours are gone. Callers filter t exactly; the day range here only
-- bounds the index scan.
function M.window_usage(match)
    return ([[
SELECT u.pattern_id, u.hour AS t, u.usage_count AS c, false AS daily
  FROM pattern_usage_hourly u
 WHERE %s AND u.hour >= w.t2 AND u.hour < w.t0
UNION ALL
SELECT u.pattern_id, u.day::timestamp AT TIME ZONE 'UTC', u.usage_count, true
  FROM pattern_usage_daily u
 WHERE %s AND u.day >= (w.t2 AT TIME ZONE 'UTC')::date
   AND u.day <= (w.t0 AT TIME ZONE 'UTC')::date]]):format(match, match)
end

-- The sums over rows x of M.window_usage: recent (last window), previous (the one before) and
-- whether a daily bucket took part (then window edges inside those days are approximate).
M.WINDOW_SUMS = [[
sum(x.c) FILTER (WHERE x.t >= w.t1 AND x.t < w.t0)::bigint AS recent,
sum(x.c) FILTER (WHERE x.t >= w.t2 AND x.t < w.t1)::bigint AS previous,
coalesce(bool_or(x.daily) FILTER (WHERE x.t >= w.t2 AND x.t < w.t0), false) AS from_daily]]

-- What a response says when daily buckets took part in a trend.
M.DAILY_NOTE = "part of these windows is older than the hourly retention and held as daily " ..
    "buckets; each such day counts entirely in the window that holds its start (00:00 UTC), " ..
    "so a window edge inside such a day is approximate"

-- Columns of one pattern plus its usage in the two trend windows. $1 is always window_days;
-- callers append their own WHERE/ORDER/LIMIT with $2...
M.SELECT = ([[
SELECT n.pattern_id,
       coalesce(n.pattern_name, n.pattern_id) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type,
       coalesce(n.usage_count, 0)::bigint AS usage_count,
       n.last_used_at,
       n.first_used_at,
       n.created_at,
       coalesce(ua.agents, ARRAY[]::text[]) AS used_by_agents,
       coalesce(cardinality(ua.agents), 0) AS agent_count,
       n.registered,
       floor(extract(epoch FROM now() - n.last_used_at) / 86400)::bigint AS days_since_last_use,
       floor(extract(epoch FROM now() - n.created_at) / 86400)::bigint AS age_days,
       tr.recent, tr.previous
  FROM pattern_lineage_nodes n
 CROSS JOIN %s
  LEFT JOIN LATERAL (SELECT %s
                       FROM (%s) x) tr ON true
  LEFT JOIN LATERAL (SELECT array_agg(a.agent_name ORDER BY a.agent_name) AS agents
                       FROM pattern_agents a WHERE a.pattern_id = n.pattern_id) ua ON true
]]):format(M.WINDOWS, M.WINDOW_SUMS, M.window_usage("u.pattern_id = n.pattern_id"))

-- The seed's trend rule: the last window against the one before, +-10 %; no usage at all in
-- the earlier window means there is no history to compare with.
function M.trend(recent, previous)
    if previous == nil or previous == pt.null or previous == 0 then
        return "insufficient_data", 0.0
    end
    if recent == nil or recent == pt.null then
        recent = 0
    end
    local pct = (recent - previous) / previous * 100.0
    pct = math.floor(pct * 100 + 0.5) / 100
    if pct > 10 then
        return "increasing", pct + 0.0
    elseif pct < -10 then
        return "decreasing", math.abs(pct) + 0.0
    end
    return "stable", math.abs(pct) + 0.0
end

-- M.trend's percentage as an SQL expression over the integer expressions `recent` and
-- `previous` (> 0), with the same float8 operations (PostgreSQL's float8 and Lua's numbers are
-- both IEEE doubles, so the values are identical): routes that rank many patterns filter and
-- order in the database, and still report M.trend's values. Keep the two the same.
function M.trend_pct_sql(recent, previous)
    return ("(floor(((%s) - (%s))::float8 / (%s)::float8 * 100.0::float8 * 100::float8 "
        .. "+ 0.5::float8) / 100::float8)"):format(recent, previous, previous)
end

-- A row of M.SELECT as PatternUsageStats.
function M.row(r, include_trend)
    local out = {
        pattern_id = r.pattern_id,
        pattern_name = r.pattern_name,
        pattern_type = r.pattern_type,
        usage_count = r.usage_count,
        last_used_at = r.last_used_at,
        first_used_at = r.first_used_at,
        used_by_agents = r.used_by_agents,
        agent_count = r.agent_count,
        days_since_last_use = r.days_since_last_use,
        registered = r.registered,
    }
    if include_trend == false then
        out.trend = "insufficient_data"
        out.trend_percentage = 0.0
    else
        out.trend, out.trend_percentage = M.trend(r.recent, r.previous)
    end
    return out
end

function M.rows(rows, include_trend, extra)
    local out = pt.array()
    for i, r in ipairs(rows) do
        local s = M.row(r, include_trend)
        if extra then
            extra(s, r)
        end
        out[i] = s
    end
    return out
end

return M
