-- Co-occurrence: a pattern's partners (GET .../{pattern_id}/cooccurring) and the pairs used
-- together most (GET .../cooccurrence/top), from the folded and pending partner lists
-- (lua/routes/history.lua declares the routes).
local H = require("pt.history")

local null = pt.null

local M = {}


-- Co-occurrence is held in partner lists (src/cooc.h): one folded row per pattern
-- (pattern_lists.partners) and the rows flushes left pending (pattern_lists_pending), each list
-- holding both sides of its pairs. The lists are decoded and summed by pt.list_entries /
-- pt.cooc_top_pairs (src/l_cooc.c); SQL would take microseconds an entry, and a popular pattern
-- has thousands of partners.

-- One statement, so one snapshot: the pattern's usage (no row at all when it is unknown), the
-- event totals and its lists (one row with a NULL list when it has none).
local PARTNER_LISTS = [[
WITH me AS (SELECT coalesce(usage_count, 0)::bigint AS usage_count
              FROM pattern_lineage_nodes WHERE pattern_id = $1),
     tot AS (]] .. H.EVENT_TOTALS .. [[),
     l AS (SELECT partners AS data FROM pattern_lists
            WHERE pattern_id = $1 AND partners IS NOT NULL
           UNION ALL
           SELECT partners FROM pattern_lists_pending
            WHERE pattern_id = $1 AND partners IS NOT NULL)
SELECT me.usage_count AS me_usage_count, tot.events_with_patterns,
       tot.events_over_cooccurrence_limit, l.data
  FROM me CROSS JOIN tot LEFT JOIN l ON true]]

-- The partners ($1 ids, $2 counts, $3 last times, as pt.list_entries gives them) with their
-- catalog rows, the top $4 in the order asked for ($5 = count, lift or jaccard; $6 = the
-- pattern's own usage). Lift orders as count / usage(partner) and Jaccard as
-- count / (usage($1) + usage(partner) - count): N and the pattern's usage are the same for all.
local RANK_PARTNERS = [[
SELECT p.other AS pattern_id, coalesce(n.pattern_name, p.other) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type,
       coalesce(n.usage_count, 0)::bigint AS usage_count, p.cnt AS count,
       pt_ts(p.l) AS last_seen_together
  FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS p(other, cnt, l)
  LEFT JOIN pattern_lineage_nodes n ON n.pattern_id = p.other
 ORDER BY CASE $5 WHEN 'count' THEN NULL
                  WHEN 'lift' THEN p.cnt::numeric / nullif(coalesce(n.usage_count, 0), 0)
                  ELSE p.cnt::numeric / nullif($6::bigint + coalesce(n.usage_count, 0) - p.cnt, 0)
          END DESC NULLS LAST, p.cnt DESC, p.other COLLATE "C"
 LIMIT $4]]

-- For /cooccurrence/top ($1 = limit), in one snapshot: a header row (the event totals, and in cnt
-- how many pairs pattern_cooccurrence_top keeps), the top's rows, and the pending lists that can
-- change the answer. Every count is at least its merged part, so the top's $1-th count (k0) is a
-- floor of the answer's last one. A pending pair is in both its patterns' lists, with at most
-- their sums of partners_max (bound) pending; its merged part is the top's row, or at most the
-- top's last count (tmin) when the top is full and the pair is not in it. A pattern whose pairs
-- cannot reach k0 (tmin + bound < k0, and every top row of it below k0 with its pending added)
-- cannot change the answer, and its lists are not read: under ingest, with the fold behind,
-- they are most of the pending rows. A NULL partners_max (rows from before 016) is no bound.
local TOP_READ = [[
WITH top AS (SELECT pattern_id_1 AS a, pattern_id_2 AS b, cooccurrence_count AS cnt, last_us AS l
               FROM pattern_cooccurrence_top),
lim AS (SELECT coalesce((SELECT cnt FROM top ORDER BY cnt DESC OFFSET $1 - 1 LIMIT 1), 0) AS k0,
               CASE WHEN (SELECT count(*) FROM top) >= pt_cooccurrence_top_keep()
                    THEN coalesce((SELECT min(cnt) FROM top), 0) ELSE 0 END AS tmin),
b AS (SELECT pattern_id, CASE WHEN count(partners_max) = count(*) THEN sum(partners_max) END
                         AS bound
        FROM pattern_lists_pending WHERE n_partners > 0 GROUP BY pattern_id),
cand AS (SELECT b.pattern_id FROM b, lim WHERE b.bound IS NULL OR lim.tmin + b.bound >= lim.k0
         UNION
         SELECT x.p
           FROM top t JOIN b ba ON ba.pattern_id = t.a JOIN b bb ON bb.pattern_id = t.b
                CROSS JOIN lim CROSS JOIN LATERAL (VALUES (t.a), (t.b)) AS x(p)
          WHERE t.cnt + least(coalesce(ba.bound, 4611686018427387904),
                              coalesce(bb.bound, 4611686018427387904)) >= lim.k0)
SELECT 'h' AS kind, NULL::text AS a, NULL::text AS b, pt_cooccurrence_top_keep()::bigint AS cnt,
       NULL::bigint AS l, NULL::bytea AS data, tot.events_with_patterns,
       tot.events_over_cooccurrence_limit
  FROM (]] .. H.EVENT_TOTALS .. [[) tot
UNION ALL
SELECT 't', a, b, cnt, l, NULL, NULL, NULL FROM top
UNION ALL
SELECT 'p', pattern_id, NULL, NULL, NULL, partners, NULL, NULL FROM pattern_lists_pending
 WHERE n_partners > 0 AND pattern_id IN (SELECT pattern_id FROM cand)]]
-- The lists of the patterns ($1) whose pending pairs may rank in the top but whose merged part
-- is not in pattern_cooccurrence_top; all lists when $1 is NULL.
local TOP_RESOLVE = [[
SELECT 'r' AS kind, pattern_id AS a, partners AS data FROM pattern_lists
 WHERE partners IS NOT NULL AND ($1::text[] IS NULL OR pattern_id = ANY($1::text[]))
UNION ALL
SELECT 'r', pattern_id, partners FROM pattern_lists_pending
 WHERE partners IS NOT NULL AND ($1::text[] IS NULL OR pattern_id = ANY($1::text[]))]]
-- The pairs pt.cooc_top_pairs chose, in its order, with their catalog rows.
local TOP_NAMES = [[
SELECT c.a AS pattern_id_1, coalesce(n1.pattern_name, c.a) AS pattern_name_1,
       coalesce(n1.usage_count, 0)::bigint AS usage_count_1,
       c.b AS pattern_id_2, coalesce(n2.pattern_name, c.b) AS pattern_name_2,
       coalesce(n2.usage_count, 0)::bigint AS usage_count_2,
       c.cnt AS count, pt_ts(c.l) AS last_seen_together
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY
       AS c(a, b, cnt, l, rn)
  LEFT JOIN pattern_lineage_nodes n1 ON n1.pattern_id = c.a
  LEFT JOIN pattern_lineage_nodes n2 ON n2.pattern_id = c.b
 ORDER BY c.rn]]


function M.cooccurring(req)
    local id, sort, limit = req.params.pattern_id, req.args.sort, req.args.limit
    local rows = db.query(PARTNER_LISTS, id)
    if #rows == 0 then
        pt.fail(404, "Pattern not found: " .. id)
    end
    local me, n = rows[1].me_usage_count, rows[1].events_with_patterns
    local lists = {}
    for _, r in ipairs(rows) do
        if r.data ~= null then
            lists[#lists + 1] = r.data
        end
    end
    local out = pt.array()
    -- by count only the top `limit` are looked up; lift and Jaccard need every partner's usage.
    -- The catalog is read just after the counts: a partner's usage may be a flush newer.
    local ids, counts, _, lasts, np = pt.list_entries(lists, sort == "count" and limit or 0)
    if np > 0 then
        for _, r in ipairs(db.query(RANK_PARTNERS, ids, counts, lasts, limit, sort, me)) do
            local lift, jaccard = H.measures(r.count, me, r.usage_count, n)
            out[#out + 1] = { pattern_id = r.pattern_id, pattern_name = r.pattern_name,
                pattern_type = r.pattern_type, usage_count = r.usage_count, count = r.count,
                lift = lift, jaccard = jaccard, last_seen_together = r.last_seen_together }
        end
    end
    return { pattern_id = id, usage_count = me, events_with_patterns = n,
        events_over_cooccurrence_limit = rows[1].events_over_cooccurrence_limit,
        cooccurring = out }
end

function M.top_pairs(req)
    local limit = req.args.limit
    local rows = db.query_heavy(TOP_READ, limit)
    local head
    for _, r in ipairs(rows) do
        if r.kind == "h" then
            head = r
            break
        end
    end
    local pairs_, need = pt.cooc_top_pairs(rows, limit)
    if not pairs_ then
        -- true: every list (the top keeps fewer pairs than asked for)
        local more = db.query_heavy(TOP_RESOLVE, need ~= true and H.text_array(need) or nil)
        pairs_ = pt.cooc_top_pairs(rows, limit, need, more)
    end
    local out = pt.array()
    if pairs_.n > 0 then
        for _, r in ipairs(db.query(TOP_NAMES, pairs_.ids1, pairs_.ids2, pairs_.counts,
            pairs_.lasts)) do
            local lift, jaccard = H.measures(r.count, r.usage_count_1, r.usage_count_2,
                head.events_with_patterns)
            out[#out + 1] = { pattern_id_1 = r.pattern_id_1, pattern_name_1 = r.pattern_name_1,
                usage_count_1 = r.usage_count_1, pattern_id_2 = r.pattern_id_2,
                pattern_name_2 = r.pattern_name_2, usage_count_2 = r.usage_count_2,
                count = r.count, lift = lift, jaccard = jaccard,
                last_seen_together = r.last_seen_together }
        end
    end
    return { events_with_patterns = head.events_with_patterns,
        events_over_cooccurrence_limit = head.events_over_cooccurrence_limit, pairs = out }
end

return M
