-- Event-ID deduplication's claims (src/claims.h): each event of a deduplicated topic that has an
-- ID asks, before its batch's counts are built, whether its Kafka position (partition, offset)
-- may count it. A key (hash of topic and ID) is held by the first position that claims it, for
-- that event's window (win seconds); the same position claiming again (its batch consumed
-- again after a crash or a rebalance) still holds it, and once expired anyone may take it.
-- Committed on its own, before the counts: a claim names its position, so whatever happens
-- between this commit and the counts' commit, the event that counts is the same one.
--   c_key, c_part, c_off, c_win  keys one event of the batch holds, sorted by key;
--   r_key, r_part, r_off, r_win  keys several events of the batch hold (copies within the batch),
--                          sorted by key, then arrival: the position holding the claim is the
--                          one that may count, else the first copy.
-- Returns the ordinals of the claims held (1-based; r_key's after c_key's).
CREATE OR REPLACE FUNCTION pt_claim_events(
    c_key UUID[], c_part INTEGER[], c_off BIGINT[], c_win INTEGER[],
    r_key UUID[], r_part INTEGER[], r_off BIGINT[], r_win INTEGER[]
) RETURNS INTEGER[]
LANGUAGE plpgsql
SET jit = off SET enable_seqscan = off
AS
$$
DECLARE
    n_single INTEGER := coalesce(array_length(c_key, 1), 0);
    v_won    INTEGER[];
BEGIN
    -- A claim lost in a crash of PostgreSQL is lost with every later commit that relied on it
    -- (the WAL is flushed in order), and the batch is consumed again.
    PERFORM set_config('synchronous_commit', 'off', true);
    WITH x AS (
        SELECT * FROM unnest(c_key, c_part, c_off, c_win) WITH ORDINALITY
                      AS s(xkey, xpart, xoff, xwin, xord)
        UNION ALL
        (SELECT DISTINCT ON (r.xkey) r.xkey, r.xpart, r.xoff, r.xwin, r.xord + n_single
           FROM unnest(r_key, r_part, r_off, r_win) WITH ORDINALITY
                AS r(xkey, xpart, xoff, xwin, xord)
           LEFT JOIN usage_event_claims c
             ON c.key = r.xkey AND c.partition = r.xpart AND c.kafka_offset = r.xoff
            AND c.expires_at > now()
          ORDER BY r.xkey, (c.key IS NOT NULL) DESC, r.xord)),
    ins AS (
        -- in key order: concurrent claimers wait for each other's keys in one order, never in a
        -- cycle
        INSERT INTO usage_event_claims AS c (key, partition, kafka_offset, expires_at)
        SELECT xkey, xpart, xoff, now() + make_interval(secs => xwin) FROM x ORDER BY xkey
        ON CONFLICT (key) DO UPDATE
           SET partition    = EXCLUDED.partition,
               kafka_offset = EXCLUDED.kafka_offset,
               expires_at   = CASE WHEN c.expires_at <= now() THEN EXCLUDED.expires_at
                                   ELSE c.expires_at END
         WHERE c.expires_at <= now()
            OR (c.partition = EXCLUDED.partition AND c.kafka_offset = EXCLUDED.kafka_offset)
        RETURNING c.key)
    SELECT array_agg(x.xord ORDER BY x.xord) INTO v_won FROM x JOIN ins ON ins.key = x.xkey;
    RETURN coalesce(v_won, '{}');
END
$$;
