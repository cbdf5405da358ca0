-- Deletes up to p_limit expired claims of event-ID deduplication (pt_claim_events); returns how
-- many. Run off the ingest path, in bounded batches (src/maint.c), through the BRIN index on
-- expires_at (claims are appended roughly in expiry order). An expired claim re-taken meanwhile
-- is a new row version, which the re-check leaves alone.
CREATE OR REPLACE FUNCTION pt_prune_claims(p_limit INTEGER) RETURNS INTEGER
LANGUAGE sql
AS
$$
    WITH d AS (
        DELETE FROM usage_event_claims
         WHERE ctid = ANY (ARRAY(SELECT ctid FROM usage_event_claims
                                  WHERE expires_at <= now() LIMIT p_limit))
           AND expires_at <= now()
        RETURNING 1)
    SELECT count(*)::int FROM d
$$;
