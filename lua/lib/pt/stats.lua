-- PatternUsageStats, the seed's response model, built from pattern_lineage_nodes and the hourly
-- buckets. Shared by the usage routes so every endpoint reports a pattern the same way.
local M = {}

-- Columns of one pattern plus its usage in two trailing windows of whole hours: the last
-- `window_days` days up to the end of the current hour, and the same span before it.
-- $1 is always window_days; callers append their own WHERE/ORDER/LIMIT with $2...
M.SELECT = [[
SELECT n.pattern_id,
       coalesce(n.pattern_name, n.pattern_id) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type,
       coalesce(n.usage_count, 0)::bigint AS usage_count,
       n.last_used_at,
       n.first_used_at,
       n.created_at,
       coalesce(n.used_by_agents, ARRAY[]::text[]) AS used_by_agents,
       coalesce(cardinality(n.used_by_agents), 0) AS agent_count,
       n.registered,
       floor(extract(epoch FROM now() - n.last_used_at) / 86400)::bigint AS days_since_last_use,
       floor(extract(epoch FROM now() - n.created_at) / 86400)::bigint AS age_days,
       tr.recent, tr.previous
  FROM pattern_lineage_nodes n
  CROSS JOIN (SELECT date_trunc('hour', now()) + interval '1 hour' AS t0) b
  LEFT JOIN LATERAL (
       SELECT sum(h.usage_count) FILTER (WHERE h.hour >= b.t0 - make_interval(days => $1::int)) AS recent,
              sum(h.usage_count) FILTER (WHERE h.hour < b.t0 - make_interval(days => $1::int)) AS previous
         FROM pattern_usage_hourly h
        WHERE h.pattern_id = n.pattern_id
          AND h.hour >= b.t0 - make_interval(days => 2 * $1::int) AND h.hour < b.t0) tr ON true
]]

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
