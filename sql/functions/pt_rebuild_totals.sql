-- Recomputes the totals the flush keeps from what they sum (after editing counts by hand, or to
-- check them): agent_usage_totals and agent_type_usage from the agents' partner lists,
-- usage_hourly_totals and usage_daily_totals from the per-pattern buckets. Slow on a large
-- database (it decodes every agent's list in SQL).
CREATE OR REPLACE FUNCTION pt_rebuild_totals() RETURNS VOID
LANGUAGE sql AS
$$
    DELETE FROM agent_usage_totals;
    INSERT INTO agent_usage_totals
           (agent_name, usage_count, distinct_patterns, first_used_at, last_used_at)
    SELECT agent_name, sum(usage_count), count(*), min(first_used_at), max(last_used_at)
      FROM agent_pattern_usage GROUP BY agent_name;
    DELETE FROM usage_hourly_totals;
    INSERT INTO usage_hourly_totals
    SELECT hour, sum(usage_count) FROM pattern_usage_hourly GROUP BY hour;
    DELETE FROM usage_daily_totals;
    INSERT INTO usage_daily_totals
    SELECT day, sum(usage_count) FROM pattern_usage_daily GROUP BY day;
    SELECT pt_rebuild_agent_types(NULL);
$$;
