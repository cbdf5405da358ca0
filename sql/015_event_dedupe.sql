-- 015: event-ID deduplication (pt_claim_events, sql/functions/). One row per claim on an event's
-- key: the Kafka position (partition, offset) that may count the event, until expires_at. The
-- key is a 128-bit hash of the topic and the event ID (src/ingest.c), so a claim holds no event
-- text. Expired claims are deleted by pt_prune_claims, off the ingest path (src/maint.c).
-- BENCHMARKS.md ("Event-ID deduplication") has the figures that chose one row per claim, found
-- by a BRIN index when expired: claims are appended roughly in expiry order, and a B-tree on
-- expires_at cost each claim about half as much again.
CREATE TABLE IF NOT EXISTS usage_event_claims (
    key          UUID PRIMARY KEY,
    partition    INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_usage_event_claims_expires ON usage_event_claims
    USING brin (expires_at) WITH (autosummarize = on);

-- Copies of events counted before, per topic.
ALTER TABLE usage_topic_stats ADD COLUMN IF NOT EXISTS duplicates BIGINT NOT NULL DEFAULT 0;

-- pt_flush gained t_dups: the definition before it, which nothing calls any more.
DROP FUNCTION IF EXISTS pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[],
    BIGINT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[],
    BIGINT[], TEXT[], TEXT[], BIGINT[], BIGINT[], BIGINT[], TEXT[], TEXT[], TEXT[], BIGINT[],
    BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], TEXT[], INTEGER[], BIGINT[], TEXT[],
    TEXT[], BYTEA[], INTEGER[], TEXT[], INTEGER[], INTEGER[], INTEGER[], INTEGER[], INTEGER[],
    TEXT[], INTEGER[], INTEGER[], BYTEA, BOOLEAN);
