-- Recomputes agent_type_usage for the given agents (all when NULL) from their (pattern, agent)
-- usage and the catalog's pattern_type ('unknown' without one). Reads the agents' partner lists
-- through the view agent_pattern_usage (slow: microseconds an entry; a registration that moves
-- a used pattern to another type calls it for that pattern's agents).
CREATE OR REPLACE FUNCTION pt_rebuild_agent_types(p_agents TEXT[]) RETURNS VOID
LANGUAGE sql AS
$$
    DELETE FROM agent_type_usage WHERE p_agents IS NULL OR agent_name = ANY (p_agents);
    INSERT INTO agent_type_usage
    SELECT a.agent_name, coalesce(n.pattern_type, 'unknown'), sum(a.usage_count), count(*),
           min(a.first_used_at), max(a.last_used_at)
      FROM agent_pattern_usage a
      LEFT JOIN pattern_lineage_nodes n ON n.pattern_id = a.pattern_id
     WHERE p_agents IS NULL OR a.agent_name = ANY (p_agents)
     GROUP BY 1, 2
     ORDER BY 1, 2;
$$;
