-- Agents: who uses patterns, how much, and which kinds (the seed's agent_pattern_preferences).
-- From tables the flush keeps current (sql/functions/pt_flush.sql): agent_usage_totals and
-- agent_type_usage (per agent and the catalog's pattern_type); an agent's top patterns from its
-- partner lists (agent_lists, folded and pending), ranked in the engine, so a profile reads a
-- few rows however many patterns the agent used. An agent's usage_count counts pattern uses: an
-- event referencing k patterns counts k.
local H = require("pt.history")

local M = {}

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

function M.list(req)
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

function M.profile(req)
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

return M
