-- Deletes up to p_limit dead letters older than p_days days (oldest first) and returns how many:
-- dead_letter_retention_days, run off the ingest path in bounded batches (src/upkeep.c) through
-- the index on created_at.
CREATE OR REPLACE FUNCTION pt_prune_dead_letters(p_days INTEGER, p_limit INTEGER)
RETURNS INTEGER
LANGUAGE sql
AS
$$
    WITH d AS (
        DELETE FROM usage_dead_letters
         WHERE id = ANY (ARRAY(SELECT id FROM usage_dead_letters
                                WHERE created_at < now() - make_interval(days => p_days)
                                ORDER BY created_at LIMIT p_limit))
        RETURNING 1)
    SELECT count(*)::int FROM d
$$;
