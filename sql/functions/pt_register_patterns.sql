-- Catalog registration (PUT /api/patterns/{id}, POST /api/patterns), as one set-based upsert.
-- A pattern given without created_at keeps its own (a new one gets now(): EXCLUDED cannot say
-- whether a value was given, so now(), the transaction's start, marks "not given"); a status
-- not given is the current one. When a request changes a used pattern's type, its agents'
-- agent_type_usage rows are recomputed. That must not interleave with a flush adding to the
-- old type's rows: flushes hold ROW EXCLUSIVE on agent_type_usage from their start, and a
-- registration that may change a type takes SHARE ROW EXCLUSIVE first (waits for running
-- flushes, holds new ones at their start, and nothing else yet, so no deadlock). A flush that
-- took the old type for a pattern fails with PT410 and is built again (pt_flush).
CREATE OR REPLACE FUNCTION pt_register_patterns(
    p_id TEXT[], p_name TEXT[], p_type TEXT[], p_created TIMESTAMPTZ[], p_status TEXT[])
RETURNS TABLE (inserted BOOLEAN)
LANGUAGE plpgsql AS
$$
DECLARE
    moved TEXT[];
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_type) AS t WHERE t IS NOT NULL) THEN
        LOCK TABLE agent_type_usage IN SHARE ROW EXCLUSIVE MODE;
        SELECT array_agg(n.pattern_id) INTO moved
          FROM unnest(p_id, p_type) AS x(id, typ)
          JOIN pattern_lineage_nodes n ON n.pattern_id = x.id
         WHERE x.typ IS NOT NULL AND x.typ IS DISTINCT FROM n.pattern_type
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
    IF moved IS NOT NULL THEN
        PERFORM pt_rebuild_agent_types(ARRAY(SELECT DISTINCT agent_name
                                               FROM pattern_agents
                                              WHERE pattern_id = ANY (moved)));
    END IF;
END
$$;
