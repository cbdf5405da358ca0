-- Usage per (pattern, agent): count, first and last use, as the table of that name held them
-- before migration 014. The counts live in partner lists (each pattern's agents, folded and
-- pending: pattern_lists, pattern_lists_pending) that this view decodes in SQL: fast enough for
-- one pattern (WHERE pattern_id = ...), slow for the whole table. By agent, read
-- agent_pattern_usage: the same rows from the agents' lists.
DROP VIEW IF EXISTS pattern_agent_usage;
CREATE VIEW pattern_agent_usage AS
SELECT u.pattern_id, u.partner AS agent_name, sum(u.cnt)::bigint AS usage_count,
       pt_ts(min(u.first_us)) AS first_used_at, pt_ts(max(u.last_us)) AS last_used_at
  FROM (SELECT m.pattern_id, e.partner, e.cnt, e.first_us, e.last_us
          FROM pattern_lists m, pt_list_entries(m.agents) e
        UNION ALL
        SELECT p.pattern_id, e.partner, e.cnt, e.first_us, e.last_us
          FROM pattern_lists_pending p, pt_list_entries(p.agents) e) u
 GROUP BY u.pattern_id, u.partner;
