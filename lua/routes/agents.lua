-- Agents: who uses patterns, how much, and which kinds (the seed's agent_pattern_preferences).
-- From tables the flush keeps current (sql/functions/pt_flush.sql): agent_usage_totals and
-- agent_type_usage (per agent and the catalog's pattern_type); an agent's top patterns from its
-- partner lists (agent_lists, folded and pending), ranked in the engine, so a profile reads a
-- few rows however many patterns the agent used. An agent's usage_count counts pattern uses: an
-- event referencing k patterns counts k.
local H = require("pt.history")

local TIME = { type = "string", format = "date-time" }

-- Agents by usage, most first, with the number of agents in all ($1 limit, $2 offset), from
-- the totals the flush keeps (sql/008_totals.sql).
local AGENTS = [[
SELECT agent_name, usage_count, distinct_patterns, first_used_at, last_used_at,
       count(*) OVER () AS total
  FROM agent_usage_totals
 ORDER BY usage_count DESC, agent_name COLLATE "C"
 LIMIT $1 OFFSET $2]]

-- One agent's usage per pattern_type, its totals (the row with is_total), and its partner lists
-- of patterns (folded and pending: rows with data), in one statement, so one snapshot.
local BY_TYPE = [[
SELECT pattern_type, false AS is_total, usage_count, patterns, first_used_at, last_used_at,
       NULL::bytea AS data
  FROM agent_type_usage
 WHERE agent_name = $1
UNION ALL
SELECT NULL, true, usage_count, distinct_patterns, first_used_at, last_used_at, NULL
  FROM agent_usage_totals
 WHERE agent_name = $1
UNION ALL
SELECT NULL, false, NULL, NULL, NULL, NULL, patterns FROM agent_lists WHERE agent_name = $1
UNION ALL
SELECT NULL, false, NULL, NULL, NULL, NULL, patterns FROM agent_lists_pending
 WHERE agent_name = $1]]

-- The agent's top patterns ($1..$4: ids, counts, first and last times, as pt.list_entries ranks
-- them) with their catalog rows, in that order.
local TOP_PATTERNS = [[
SELECT t.id AS pattern_id, coalesce(n.pattern_name, t.id) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type, coalesce(n.status, 'active') AS status,
       t.cnt AS usage_count, pt_ts(t.f) AS first_used_at, pt_ts(t.l) AS last_used_at
  FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) WITH ORDINALITY
       AS t(id, cnt, f, l, ord)
  LEFT JOIN pattern_lineage_nodes n ON n.pattern_id = t.id
 ORDER BY t.ord]]

local function agents(req)
    local rows = db.query(AGENTS, req.args.limit, req.args.offset)
    local out, total = pt.array(), 0
    for i, r in ipairs(rows) do
        total = r.total
        out[i] = { agent_name = r.agent_name, usage_count = r.usage_count,
            distinct_patterns = r.distinct_patterns, first_used_at = r.first_used_at,
            last_used_at = r.last_used_at }
    end
    if #rows == 0 and req.args.offset > 0 then
        total = db.query("SELECT count(*) AS n FROM agent_usage_totals")[1].n
    end
    return { total = total, limit = req.args.limit, offset = req.args.offset, agents = out }
end

local function profile(req)
    local name = req.params.agent_name
    local rows = db.query(BY_TYPE, name)
    local totals
    local types = pt.array()
    local lists = {}
    for _, r in ipairs(rows) do
        if r.data ~= pt.null then
            lists[#lists + 1] = r.data
        elseif r.is_total then
            totals = r
        else
            types[#types + 1] = r
        end
    end
    if totals == nil or totals.patterns == 0 then
        pt.fail(404, "Agent not found: " .. name)
    end
    table.sort(types, function(a, b)
        if a.usage_count ~= b.usage_count then
            return a.usage_count > b.usage_count
        end
        return a.pattern_type < b.pattern_type
    end)
    for i, r in ipairs(types) do
        types[i] = { pattern_type = r.pattern_type, usage_count = r.usage_count,
            patterns = r.patterns,
            percentage = H.round(r.usage_count / totals.usage_count * 100, 2),
            first_used_at = r.first_used_at, last_used_at = r.last_used_at }
    end
    -- The agent's top patterns by count (ties by pattern_id in byte order), from its lists.
    local ids, counts, firsts, lasts, n = pt.list_entries(lists, req.args.limit, "count")
    local top = n > 0 and db.query(TOP_PATTERNS, ids, counts, firsts, lasts) or pt.array()
    return { agent_name = name, usage_count = totals.usage_count,
        distinct_patterns = totals.patterns, first_used_at = totals.first_used_at,
        last_used_at = totals.last_used_at, by_pattern_type = types, top_patterns = top }
end

local AGENT = { type = "object", properties = { agent_name = { type = "string" },
    usage_count = { type = "integer" }, distinct_patterns = { type = "integer" },
    first_used_at = TIME, last_used_at = TIME } }

return {
    {
        method = "GET", path = "/api/agents", tags = { "agents" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Agents with their totals, most active first",
        description = "usage_count counts pattern uses (an event referencing k patterns " ..
            "counts k); events without an agent count under \"unknown\".",
        query = {
            { name = "limit", type = "integer", minimum = 1, maximum = 1000, default = 100 },
            { name = "offset", type = "integer", minimum = 0, maximum = 1000000, default = 0 },
        },
        responses = { ["200"] = { description = "A page of agents", schema = { type = "object",
            properties = { total = { type = "integer" }, limit = { type = "integer" },
                offset = { type = "integer" },
                agents = { type = "array", items = AGENT } } } } },
        handler = agents,
    },
    {
        method = "GET", path = "/api/agents/{agent_name}/profile", tags = { "agents" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "One agent's usage per pattern_type, with last use, and its top patterns",
        description = "by_pattern_type: usage_count, patterns (distinct), percentage of the " ..
            "agent's usage (2 decimals), first and last use, most used first; a pattern with no " ..
            "type in the catalog counts as \"unknown\". 404 for an agent that used nothing.",
        query = { { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 10,
            description = "How many top patterns." } },
        responses = {
            ["200"] = { description = "Profile", schema = { type = "object", properties = {
                agent_name = { type = "string" }, usage_count = { type = "integer" },
                distinct_patterns = { type = "integer" }, first_used_at = TIME,
                last_used_at = TIME,
                by_pattern_type = { type = "array", items = { type = "object", properties = {
                    pattern_type = { type = "string" }, usage_count = { type = "integer" },
                    patterns = { type = "integer" }, percentage = { type = "number" },
                    first_used_at = TIME, last_used_at = TIME } } },
                top_patterns = { type = "array", items = { type = "object", properties = {
                    pattern_id = { type = "string" }, pattern_name = { type = "string" },
                    pattern_type = { type = "string" }, status = { type = "string" },
                    usage_count = { type = "integer" }, first_used_at = TIME,
                    last_used_at = TIME } } } } } },
            ["404"] = { description = "Unknown agent",
                schema = { type = "object", properties = { detail = { type = "string" } } } },
        },
        handler = profile,
    },
}
