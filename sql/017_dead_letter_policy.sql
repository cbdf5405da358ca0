-- 017: what dead letters keep, and for how long. Each row gets its payload's hash (XXH3-128 of
-- the whole payload, computed by the engine: it tells a payload found again, in Kafka say, from
-- another, without keeping the payload); with dead_letter_payload_max = 0 no payload byte is
-- kept at all (payload NULL). Rows older than dead_letter_retention_days are deleted in bounded
-- batches off the ingest path (pt_prune_dead_letters, src/upkeep.c), found by created_at.
ALTER TABLE usage_dead_letters ADD COLUMN IF NOT EXISTS payload_hash UUID;
CREATE INDEX IF NOT EXISTS idx_usage_dead_letters_created ON usage_dead_letters (created_at);

-- pt_flush gained d_hash: the definition before it, which nothing calls any more.
DROP FUNCTION IF EXISTS pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[],
    BIGINT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[],
    BIGINT[], TEXT[], TEXT[], BIGINT[], BIGINT[], BIGINT[], TEXT[], TEXT[], TEXT[], BIGINT[],
    BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], TEXT[], INTEGER[], BIGINT[],
    TEXT[], TEXT[], BYTEA[], INTEGER[], TEXT[], INTEGER[], INTEGER[], INTEGER[], INTEGER[],
    INTEGER[], BIGINT[], TEXT[], INTEGER[], INTEGER[], BYTEA, BOOLEAN);
