-- Catalog registration (PUT /api/patterns/{id}, POST /api/patterns), as one set-based upsert.
-- A pattern given without created_at keeps its own (a new one gets now(): EXCLUDED cannot say
-- whether a value was given, so now(), the transaction's start, marks "not given"); a status
-- not given is the current one.
--
-- When a request changes a used pattern's type, its agents' uses move between their
-- agent_type_usage rows: the pattern's (pattern, agent) counts (its partner list of agents,
-- through pattern_agent_usage) are added to the new type's rows and taken from the old type's.
-- An old type's row whose first or last use was one of the moved pattern's is recomputed from
-- the agent's whole list (agent_pattern_usage; slow, and rare). That must not interleave with a
-- flush adding to the old type's rows: flushes hold ROW EXCLUSIVE on agent_type_usage from their
-- start, and a registration that may change a type takes SHARE ROW EXCLUSIVE first (waits for
-- running flushes, holds new ones at their start, and nothing else yet, so no deadlock). A flush
-- that took the old type for a pattern fails with PT410 and is built again (pt_flush).
CREATE OR REPLACE FUNCTION pt_register_patterns(
    p_id TEXT[], p_name TEXT[], p_type TEXT[], p_created TIMESTAMPTZ[], p_status TEXT[])
RETURNS TABLE (inserted BOOLEAN)
LANGUAGE plpgsql AS
$$
DECLARE
    m_id   TEXT[]; -- used patterns whose type changes, from m_old to m_new
    m_old  TEXT[];
    m_new  TEXT[];
    redo   TEXT[]; -- agents whose old type's first or last use moved
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_type) AS t WHERE t IS NOT NULL) THEN
        LOCK TABLE agent_type_usage IN SHARE ROW EXCLUSIVE MODE;
        SELECT array_agg(n.pattern_id), array_agg(coalesce(n.pattern_type, 'unknown')),
               array_agg(x.typ)
          INTO m_id, m_old, m_new
          FROM unnest(p_id, p_type) AS x(id, typ)
          JOIN pattern_lineage_nodes n ON n.pattern_id = x.id
         WHERE x.typ IS NOT NULL AND x.typ IS DISTINCT FROM coalesce(n.pattern_type, 'unknown')
           AND EXISTS (SELECT 1 FROM pattern_agents a WHERE a.pattern_id = n.pattern_id);
    END IF;
    RETURN QUERY
    INSERT INTO pattern_lineage_nodes AS n
           (pattern_id, pattern_name, pattern_type, created_at, registered, status)
    SELECT x.id, x.name, x.typ, coalesce(x.created, now()), true,
           coalesce(x.st, cur.status, 'active')
      FROM unnest(p_id, p_name, p_type, p_created, p_status) AS x(id, name, typ, created, st)
      LEFT JOIN pattern_lineage_nodes cur ON cur.pattern_id = x.id
    ON CONFLICT (pattern_id) DO UPDATE SET
        pattern_name = coalesce(EXCLUDED.pattern_name, n.pattern_name),
        pattern_type = coalesce(EXCLUDED.pattern_type, n.pattern_type),
        created_at   = CASE WHEN EXCLUDED.created_at = now() THEN n.created_at
                            ELSE EXCLUDED.created_at END,
        status       = EXCLUDED.status,
        registered   = true
    RETURNING (n.xmax = 0);
    IF m_id IS NULL THEN
        RETURN;
    END IF;
    CREATE TEMP TABLE pt_moved ON COMMIT DROP AS
    SELECT u.agent_name, m.old, m.new, u.usage_count, u.first_used_at, u.last_used_at
      FROM unnest(m_id, m_old, m_new) AS m(id, old, new)
      JOIN pattern_agent_usage u ON u.pattern_id = m.id
     WHERE u.pattern_id = ANY (m_id); -- a condition the view's lists are read by
    INSERT INTO agent_type_usage AS t
           (agent_name, pattern_type, usage_count, patterns, first_used_at, last_used_at)
    SELECT agent_name, new, sum(usage_count), count(*), min(first_used_at), max(last_used_at)
      FROM pt_moved GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (agent_name, pattern_type) DO UPDATE SET
        usage_count   = t.usage_count + EXCLUDED.usage_count,
        patterns      = t.patterns + EXCLUDED.patterns,
        first_used_at = LEAST(t.first_used_at, EXCLUDED.first_used_at),
        last_used_at  = GREATEST(t.last_used_at, EXCLUDED.last_used_at);
    WITH d AS (SELECT agent_name, old, sum(usage_count) AS cnt, count(*) AS n,
                      min(first_used_at) AS f, max(last_used_at) AS l
                 FROM pt_moved GROUP BY 1, 2),
         upd AS (UPDATE agent_type_usage t
                    SET usage_count = t.usage_count - d.cnt, patterns = t.patterns - d.n
                   FROM d
                  WHERE t.agent_name = d.agent_name AND t.pattern_type = d.old
              RETURNING t.agent_name, t.patterns,
                        d.f <= t.first_used_at OR d.l >= t.last_used_at AS edge)
    SELECT array_agg(DISTINCT agent_name) INTO redo FROM upd WHERE patterns > 0 AND edge;
    DELETE FROM agent_type_usage WHERE patterns = 0;
    IF redo IS NOT NULL THEN
        PERFORM pt_rebuild_agent_types(redo);
    END IF;
    DROP TABLE pt_moved;
END
$$;
