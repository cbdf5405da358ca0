-- Lifecycle health: deprecated patterns still in use, active ones never used past their
-- expected lifetime, and ones not used recently (GET /api/patterns/usage/lifecycle,
-- lua/routes/history.lua).
local H = require("pt.history")

local M = {}


-- A lifecycle item's columns, and the number of items in all (total), from the catalog.
local ITEM = [[
SELECT n.pattern_id, coalesce(n.pattern_name, n.pattern_id) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type, n.status,
       coalesce(n.usage_count, 0)::bigint AS usage_count, n.last_used_at,
       floor(extract(epoch FROM now() - n.last_used_at) / 86400)::bigint AS days_since_last_use,
       count(*) OVER () AS total
  FROM pattern_lineage_nodes n
]]

-- Deprecated or retired patterns used since $1 (at most $2), most recently used first.
local STILL_USED = ITEM .. [[
 WHERE n.status <> 'active' AND n.last_used_at >= $1::timestamptz
 ORDER BY n.last_used_at DESC, n.pattern_id COLLATE "C" LIMIT $2]]

-- The partner lists of agents (folded and pending) of the patterns $1 (a text[]).
local AGENT_LISTS_OF = [[
SELECT pattern_id, agents AS data FROM pattern_lists
 WHERE pattern_id = ANY($1::text[]) AND agents IS NOT NULL
UNION ALL
SELECT pattern_id, agents FROM pattern_lists_pending
 WHERE pattern_id = ANY($1::text[]) AND agents IS NOT NULL]]

-- Active patterns never used, older than their type's lifetime ($1 types, $2 their days, $3 the
-- default), at most $4.
local NEVER_USED = [[
WITH lt AS (SELECT * FROM unnest($1::text[], $2::int[]) AS x(typ, days))
SELECT n.pattern_id, coalesce(n.pattern_name, n.pattern_id) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type, n.status, n.created_at,
       floor(extract(epoch FROM now() - n.created_at) / 86400)::bigint AS age_days,
       l.days AS lifetime_days, count(*) OVER () AS total
  FROM pattern_lineage_nodes n
 CROSS JOIN LATERAL (SELECT coalesce((SELECT lt.days FROM lt
                                       WHERE lt.typ = coalesce(n.pattern_type, 'unknown')),
                                      $3::int) AS days) l
 WHERE n.status = 'active' AND coalesce(n.usage_count, 0) = 0
   AND n.created_at <= now() - make_interval(days => l.days)
 ORDER BY n.created_at, n.pattern_id COLLATE "C" LIMIT $4]]

-- Active patterns used before, but not since $1, at most $2.
local NOT_RECENT = ITEM .. [[
 WHERE n.status = 'active' AND n.last_used_at < $1::timestamptz
 ORDER BY n.last_used_at, n.pattern_id COLLATE "C" LIMIT $2]]

local function strip_total(rows, fields)
    local out, total = pt.array(), 0
    for i, r in ipairs(rows) do
        total = r.total
        local item = {}
        for _, f in ipairs(fields) do
            item[f] = r[f]
        end
        out[i] = item
    end
    return out, total
end

function M.answer(req)
    local days, limit = req.args.days, req.args.limit
    local c = db.query([[SELECT c, (extract(epoch FROM c) * 1000000)::bigint AS c_us
                           FROM (SELECT now() - make_interval(days => $1::int) AS c) x]], days)[1]
    local cut, cut_us = c.c, c.c_us
    local still, by_id, ids = pt.array(), {}, {}
    local rows = db.query_heavy(STILL_USED, cut, limit)
    local still_total = #rows > 0 and rows[1].total or 0
    for i, r in ipairs(rows) do
        r.total = nil
        r.agent_count, r.agents = 0, pt.array()
        still[i], by_id[r.pattern_id], ids[i] = r, r, r.pattern_id
    end
    if #ids > 0 then
        -- Each pattern's agents that used it since the cut, most recent first (ties by name in
        -- byte order), at most agents_limit, and how many there are: from its partner lists.
        local lists = {}
        for _, r in ipairs(db.query_heavy(AGENT_LISTS_OF, H.text_array(ids))) do
            lists[r.pattern_id] = lists[r.pattern_id] or {}
            table.insert(lists[r.pattern_id], r.data)
        end
        for id, l in pairs(lists) do
            local p = by_id[id]
            local agents, n = pt.list_rows(l, req.args.agents_limit, "last", cut_us)
            p.agent_count = n
            for i, a in ipairs(agents) do
                p.agents[i] = { agent_name = a.id, usage_count = a.count,
                    last_used_at = pt.iso_us(a.last_us) }
            end
        end
    end
    local lifetimes, types, tdays = H.lifetimes(req.args.lifetime_days)
    local never, never_total = strip_total(
        db.query_heavy(NEVER_USED, H.text_array(types), H.int_array(tdays), lifetimes.default,
            limit),
        { "pattern_id", "pattern_name", "pattern_type", "status", "created_at", "age_days",
          "lifetime_days" })
    local stale, stale_total = strip_total(db.query_heavy(NOT_RECENT, cut, limit),
        { "pattern_id", "pattern_name", "pattern_type", "status", "usage_count", "last_used_at",
          "days_since_last_use" })
    return {
        days = days,
        lifetime_days = lifetimes,
        deprecated_in_use = still,
        potentially_stale = never,
        not_used_recently = stale,
        counts = { deprecated_in_use = still_total, potentially_stale = never_total,
            not_used_recently = stale_total },
    }
end

return M
