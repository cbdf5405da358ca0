-- 001: the seed's catalog table (created only when missing; an existing one is used as it is)
-- and the tables that the flush keeps exact.

CREATE TABLE IF NOT EXISTS pattern_lineage_nodes (
    pattern_id     VARCHAR(255) NOT NULL,
    pattern_name   TEXT,
    pattern_type   VARCHAR(100),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    usage_count    BIGINT DEFAULT 0,
    last_used_at   TIMESTAMPTZ,
    used_by_agents TEXT[] DEFAULT ARRAY[]::TEXT[]
);

-- The seed's Phase 1 columns, for a table created by another system before them.
ALTER TABLE pattern_lineage_nodes ADD COLUMN IF NOT EXISTS usage_count BIGINT DEFAULT 0;
ALTER TABLE pattern_lineage_nodes ADD COLUMN IF NOT EXISTS last_used_at TIMESTAMPTZ;
ALTER TABLE pattern_lineage_nodes
    ADD COLUMN IF NOT EXISTS used_by_agents TEXT[] DEFAULT ARRAY[]::TEXT[];
-- Ours: the earliest event time, and whether the row was registered in the catalog or created
-- because events referenced an ID nobody registered.
ALTER TABLE pattern_lineage_nodes ADD COLUMN IF NOT EXISTS first_used_at TIMESTAMPTZ;
ALTER TABLE pattern_lineage_nodes ADD COLUMN IF NOT EXISTS registered BOOLEAN NOT NULL DEFAULT true;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'pattern_lineage_nodes_usage_count_check') THEN
        ALTER TABLE pattern_lineage_nodes
            ADD CONSTRAINT pattern_lineage_nodes_usage_count_check CHECK (usage_count >= 0);
    END IF;
END
$$;

-- The flush upserts by pattern_id; a catalog that holds one pattern_id twice cannot be counted
-- exactly, so this index is required (the migration fails, naming the duplicates' index, if not).
CREATE UNIQUE INDEX IF NOT EXISTS pattern_lineage_nodes_pattern_id_key
    ON pattern_lineage_nodes (pattern_id);
CREATE INDEX IF NOT EXISTS idx_pattern_lineage_usage_count
    ON pattern_lineage_nodes (usage_count DESC);
CREATE INDEX IF NOT EXISTS idx_pattern_lineage_last_used
    ON pattern_lineage_nodes (last_used_at DESC NULLS LAST);
CREATE INDEX IF NOT EXISTS idx_pattern_lineage_used_by_agents
    ON pattern_lineage_nodes USING GIN (used_by_agents);

-- Usage per (pattern, agent): exact counts, first and last event time.
CREATE TABLE IF NOT EXISTS pattern_agent_usage (
    pattern_id    VARCHAR(255) NOT NULL,
    agent_name    TEXT NOT NULL,
    usage_count   BIGINT NOT NULL CHECK (usage_count >= 0),
    first_used_at TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pattern_id, agent_name)
);
CREATE INDEX IF NOT EXISTS idx_pattern_agent_usage_agent ON pattern_agent_usage (agent_name);

-- Usage per (pattern, UTC hour of event time): trends, time series and heatmaps.
CREATE TABLE IF NOT EXISTS pattern_usage_hourly (
    pattern_id  VARCHAR(255) NOT NULL,
    hour        TIMESTAMPTZ NOT NULL,
    usage_count BIGINT NOT NULL CHECK (usage_count >= 0),
    PRIMARY KEY (pattern_id, hour)
);
CREATE INDEX IF NOT EXISTS idx_pattern_usage_hourly_hour ON pattern_usage_hourly (hour);

-- Consumed offsets, owned by PostgreSQL: next_offset is the first offset not yet counted.
CREATE TABLE IF NOT EXISTS usage_consumer_offsets (
    group_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Per topic: events seen, events from which the rule extracted no pattern, dead letters, and
-- events the rule flagged (e.g. a pattern count with no list).
CREATE TABLE IF NOT EXISTS usage_topic_stats (
    topic                   TEXT PRIMARY KEY,
    events                  BIGINT NOT NULL DEFAULT 0,
    events_without_patterns BIGINT NOT NULL DEFAULT 0,
    dead_letters            BIGINT NOT NULL DEFAULT 0,
    flagged_events          BIGINT NOT NULL DEFAULT 0,
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS usage_dead_letters (
    id             BIGSERIAL PRIMARY KEY,
    topic          TEXT NOT NULL,
    partition      INTEGER NOT NULL,
    kafka_offset   BIGINT NOT NULL,
    reason         TEXT NOT NULL,
    detail         TEXT,
    payload        BYTEA,
    payload_size   INTEGER NOT NULL,
    truncated      BOOLEAN NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_usage_dead_letters_topic ON usage_dead_letters (topic, partition, kafka_offset);
