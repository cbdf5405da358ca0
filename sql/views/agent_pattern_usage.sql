-- The rows of pattern_agent_usage from the agents' lists (agent_lists, agent_lists_pending):
-- fast for one agent (WHERE agent_name = ...).
DROP VIEW IF EXISTS agent_pattern_usage;
CREATE VIEW agent_pattern_usage AS
SELECT u.partner AS pattern_id, u.agent_name, sum(u.cnt)::bigint AS usage_count,
       pt_ts(min(u.first_us)) AS first_used_at, pt_ts(max(u.last_us)) AS last_used_at
  FROM (SELECT m.agent_name, e.partner, e.cnt, e.first_us, e.last_us
          FROM agent_lists m, pt_list_entries(m.patterns) e
        UNION ALL
        SELECT p.agent_name, e.partner, e.cnt, e.first_us, e.last_us
          FROM agent_lists_pending p, pt_list_entries(p.patterns) e) u
 GROUP BY u.agent_name, u.partner;
