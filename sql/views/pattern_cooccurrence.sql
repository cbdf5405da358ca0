-- Every co-occurring pair once (pattern_id_1 < pattern_id_2 in byte order) with its exact count
-- (folded plus pending) and last time: for ad-hoc SQL. It decodes every partner list, slowly on
-- a large table; the API decodes lists in the engine.
DROP VIEW IF EXISTS pattern_cooccurrence;
CREATE VIEW pattern_cooccurrence AS
SELECT pattern_id_1, pattern_id_2, sum(cnt)::bigint AS cooccurrence_count,
       pt_ts(max(last_us)) AS last_seen_together
  FROM (SELECT m.pattern_id AS pattern_id_1, e.partner AS pattern_id_2, e.cnt, e.last_us
          FROM pattern_lists m, pt_list_entries(m.partners, m.n_low) e
        UNION ALL
        SELECT p.pattern_id, e.partner, e.cnt, e.last_us
          FROM pattern_lists_pending p, pt_list_entries(p.partners, p.n_low) e) u
 GROUP BY pattern_id_1, pattern_id_2;
