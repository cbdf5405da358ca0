-- The seed's usage API (/api/patterns/usage/...): same paths, parameters, ranges, defaults and
-- fields as the service it replaces, plus /unknown for IDs nobody registered.
local stats = require("pt.stats")
local H = require("pt.history")
local WINDOW = 7

-- An agent's partner lists of patterns, folded and pending, in one snapshot.
local AGENT_LISTS = [[
SELECT patterns AS data FROM agent_lists WHERE agent_name = $1
UNION ALL
SELECT patterns FROM agent_lists_pending WHERE agent_name = $1]]

local STATS_SCHEMA = {
    type = "object",
    required = pt.array({ "pattern_id", "usage_count", "used_by_agents", "agent_count", "trend",
        "trend_percentage" }),
    properties = {
        pattern_id = { type = "string" }, pattern_name = { type = "string" },
        pattern_type = { type = "string" }, usage_count = { type = "integer" },
        last_used_at = { type = "string", format = "date-time", nullable = true },
        first_used_at = { type = "string", format = "date-time", nullable = true },
        used_by_agents = { type = "array", items = { type = "string" } },
        agent_count = { type = "integer" },
        trend = { type = "string",
            enum = pt.array({ "increasing", "decreasing", "stable", "insufficient_data" }) },
        trend_percentage = { type = "number" },
        days_since_last_use = { type = "integer", nullable = true },
        registered = { type = "boolean" },
    },
}
local LIST_SCHEMA = { type = "array", items = STATS_SCHEMA }
local NOT_FOUND = { description = "Unknown pattern",
    schema = { type = "object", properties = { detail = { type = "string" } } } }

return {
    {
        method = "GET", path = "/api/patterns/usage/summary", tags = { "usage" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Overall usage summary",
        responses = { ["200"] = { description = "Summary", schema = { type = "object",
            properties = { total_patterns = { type = "integer" },
                used_patterns = { type = "integer" }, unused_patterns = { type = "integer" },
                total_usage = { type = "integer" },
                avg_usage_per_pattern = { type = "number" }, usage_rate = { type = "number" },
                total_agents = { type = "integer" } } } } },
        description = "Recomputed when this engine has committed new data since, at most " ..
            "once a second otherwise.",
        handler = function()
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
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/top", tags = { "usage" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Most used patterns (all time, or in the last `days` days)",
        description = "With days, patterns are ranked by their usage in the last days days " ..
            "(hourly and daily buckets; usage_in_window), otherwise by usage_count.",
        query = {
            { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20 },
            { name = "pattern_type", type = "string", max_length = 100 },
            { name = "days", type = "integer", minimum = 1, maximum = 365 },
        },
        responses = { ["200"] = { description = "Patterns by usage, most used first",
            schema = LIST_SCHEMA } },
        handler = function(req)
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
                    WINDOW, "{" .. table.concat(ids, ",") .. "}")
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
                WINDOW, req.args.limit, req.args.pattern_type)
            return stats.rows(rows)
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/unused", tags = { "usage" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Registered patterns never used, older than min_age_days",
        query = { { name = "min_age_days", type = "integer", minimum = 1, maximum = 365,
            default = 30 } },
        responses = { ["200"] = { description = "Unused patterns, oldest first",
            schema = LIST_SCHEMA } },
        handler = function(req)
            local rows = db.query(stats.SELECT .. [[
                WHERE coalesce(n.usage_count, 0) = 0
                  AND n.created_at <= now() - make_interval(days => $2::int)
                ORDER BY n.created_at, n.pattern_id LIMIT 1000]],
                WINDOW, req.args.min_age_days)
            return stats.rows(rows, true, function(s, r)
                s.age_days = r.age_days
                s.created_at = r.created_at
            end)
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/stale", tags = { "usage" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Patterns used before but not in the last days_inactive days",
        query = { { name = "days_inactive", type = "integer", minimum = 1, maximum = 365,
            default = 90 } },
        responses = { ["200"] = { description = "Stale patterns, longest inactive first",
            schema = LIST_SCHEMA } },
        handler = function(req)
            local rows = db.query(stats.SELECT .. [[
                WHERE n.last_used_at < now() - make_interval(days => $2::int)
                ORDER BY n.last_used_at, n.pattern_id LIMIT 1000]],
                WINDOW, req.args.days_inactive)
            return stats.rows(rows)
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/unknown", tags = { "usage" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Pattern IDs seen in events but never registered in the catalog",
        query = { { name = "limit", type = "integer", minimum = 1, maximum = 1000,
            default = 100 } },
        handler = function(req)
            local rows = db.query([[
                SELECT pattern_id, usage_count::bigint AS count, first_used_at AS first_seen,
                       last_used_at AS last_seen
                  FROM pattern_lineage_nodes WHERE NOT registered
                 ORDER BY usage_count DESC, pattern_id LIMIT $1]], req.args.limit)
            return rows
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/by-agent/{agent_name}", tags = { "usage" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Patterns used by one agent, most used by it first",
        query = { { name = "limit", type = "integer", minimum = 1, maximum = 200, default = 50 } },
        responses = { ["200"] = { description = "Patterns with the agent's own counts",
            schema = LIST_SCHEMA } },
        handler = function(req)
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
                WINDOW, H.text_array(ids))) do
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
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/{pattern_id}", tags = { "usage" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Usage statistics of one pattern",
        description = "trend compares the last window_days days with the window_days before, " ..
            "both ending at the end of the current UTC hour (the same rule as /trends).",
        query = {
            { name = "include_trend", type = "boolean", default = true },
            { name = "window_days", type = "integer", minimum = 1, maximum = 90, default = WINDOW,
              description = "Length of each trend window in days." },
        },
        responses = { ["200"] = { description = "PatternUsageStats", schema = STATS_SCHEMA },
            ["404"] = NOT_FOUND },
        handler = function(req)
            local rows = db.query(stats.SELECT .. " WHERE n.pattern_id = $2", req.args.window_days,
                req.params.pattern_id)
            if #rows == 0 then
                pt.fail(404, "Pattern not found: " .. req.params.pattern_id)
            end
            return stats.row(rows[1], req.args.include_trend)
        end,
    },
}
