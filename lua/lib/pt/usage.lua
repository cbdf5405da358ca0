-- The seed's usage answers (lua/routes/usage.lua declares the routes): the summary, patterns by
-- usage, unused, stale and unknown ones, one agent's patterns and one pattern's statistics.
local stats = require("pt.stats")
local H = require("pt.history")

local M = {}

-- Days of each trend window when a route does not say.
M.WINDOW = 7

-- An agent's partner lists of patterns, folded and pending, in one snapshot.
local AGENT_LISTS = [[
SELECT patterns AS data FROM agent_lists WHERE agent_name = $1
UNION ALL
SELECT patterns FROM agent_lists_pending WHERE agent_name = $1]]

-- The catalog's totals.
function M.summary()
        local r = db.query_heavy([[
            SELECT count(*)::bigint AS total_patterns,
                   count(*) FILTER (WHERE coalesce(usage_count, 0) > 0)::bigint
                       AS used_patterns,
                   coalesce(sum(usage_count), 0)::bigint AS total_usage,
                   (SELECT count(*) FROM agent_usage_totals)::bigint AS total_agents
              FROM pattern_lineage_nodes]])[1]
        local total = r.total_patterns
        local function round1(x)
            return math.floor(x * 10 + 0.5) / 10
        end
        return {
            total_patterns = total,
            used_patterns = r.used_patterns,
            unused_patterns = total - r.used_patterns,
            total_usage = r.total_usage,
            avg_usage_per_pattern = total > 0 and round1(r.total_usage / total) or 0.0,
            usage_rate = total > 0 and round1(r.used_patterns / total * 100) or 0.0,
            total_agents = r.total_agents,
        }
end

-- Patterns by usage_count, or by their usage in the last req.args.days days.
function M.top(req)
        if req.args.days then
            -- Rank by usage in the window first, then describe those patterns as usual.
            local ranked = db.query_heavy([[
                SELECT x.pattern_id, sum(x.c)::bigint AS in_window
                  FROM (SELECT pattern_id, usage_count AS c FROM pattern_usage_hourly
                         WHERE hour >= now() - make_interval(days => $3::int)
                        UNION ALL
                        SELECT pattern_id, usage_count FROM pattern_usage_daily
                         WHERE day >= ((now() - make_interval(days => $3::int))
                                       AT TIME ZONE 'UTC')::date) x
                  JOIN pattern_lineage_nodes n ON n.pattern_id = x.pattern_id
                 WHERE ($2::text IS NULL OR coalesce(n.pattern_type, 'unknown') = $2)
                 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $1]],
                req.args.limit, req.args.pattern_type, req.args.days)
            local ids = {}
            for i, r in ipairs(ranked) do
                ids[i] = '"' .. (r.pattern_id:gsub('[\\"]', "\\%0")) .. '"'
            end
            local rows = db.query(stats.SELECT .. " WHERE n.pattern_id = ANY($2::text[])",
                M.WINDOW, "{" .. table.concat(ids, ",") .. "}")
            local by = {}
            for _, r in ipairs(rows) do
                by[r.pattern_id] = r
            end
            local out = pt.array()
            for i, r in ipairs(ranked) do
                local st = stats.row(by[r.pattern_id])
                st.usage_in_window = r.in_window
                st.window_days = req.args.days
                out[i] = st
            end
            return out
        end
        local rows = db.query(stats.SELECT .. [[
            WHERE ($3::text IS NULL OR coalesce(n.pattern_type, 'unknown') = $3)
              AND n.usage_count IS NOT NULL
            ORDER BY n.usage_count DESC, n.pattern_id LIMIT $2]],
            M.WINDOW, req.args.limit, req.args.pattern_type)
        return stats.rows(rows)
end

-- Registered patterns never used, older than min_age_days.
function M.unused(req)
        local rows = db.query(stats.SELECT .. [[
            WHERE coalesce(n.usage_count, 0) = 0
              AND n.created_at <= now() - make_interval(days => $2::int)
            ORDER BY n.created_at, n.pattern_id LIMIT 1000]],
            M.WINDOW, req.args.min_age_days)
        return stats.rows(rows, true, function(s, r)
            s.age_days = r.age_days
            s.created_at = r.created_at
        end)
end

-- Patterns used before but not in the last days_inactive days.
function M.stale(req)
        local rows = db.query(stats.SELECT .. [[
            WHERE n.last_used_at < now() - make_interval(days => $2::int)
            ORDER BY n.last_used_at, n.pattern_id LIMIT 1000]],
            M.WINDOW, req.args.days_inactive)
        return stats.rows(rows)
end

-- Pattern IDs seen in events but never registered.
function M.unknown(req)
        local rows = db.query([[
            SELECT pattern_id, usage_count::bigint AS count, first_used_at AS first_seen,
                   last_used_at AS last_seen
              FROM pattern_lineage_nodes WHERE NOT registered
             ORDER BY usage_count DESC, pattern_id LIMIT $1]], req.args.limit)
        return rows
end

-- Patterns used by one agent, most used by it first.
function M.by_agent(req)
        -- The agent's (pattern, agent) counts are its partner lists (agent_lists, folded and
        -- pending), ranked in the engine: count descending, then pattern_id in byte order.
        local lists = {}
        for _, r in ipairs(db.query(AGENT_LISTS, req.params.agent_name)) do
            lists[#lists + 1] = r.data
        end
        local mine = pt.list_rows(lists, req.args.limit, "count")
        if #mine == 0 then
            return pt.array()
        end
        local ids = {}
        for i, m in ipairs(mine) do
            ids[i] = m.id
        end
        local by = {}
        for _, r in ipairs(db.query(stats.SELECT .. " WHERE n.pattern_id = ANY($2::text[])",
            M.WINDOW, H.text_array(ids))) do
            by[r.pattern_id] = r
        end
        local out = pt.array()
        for _, m in ipairs(mine) do
            local r = by[m.id]
            if r then
                local st = stats.row(r, true)
                st.agent_usage_count = m.count
                st.agent_first_used_at = pt.iso_us(m.first_us)
                st.agent_last_used_at = pt.iso_us(m.last_us)
                out[#out + 1] = st
            end
        end
        return out
end

-- One pattern's statistics (404 when unknown).
function M.pattern(req)
        local rows = db.query(stats.SELECT .. " WHERE n.pattern_id = $2", req.args.window_days,
            req.params.pattern_id)
        if #rows == 0 then
            pt.fail(404, "Pattern not found: " .. req.params.pattern_id)
        end
        return stats.row(rows[1], req.args.include_trend)
end

return M
