-- 005: history beyond the hourly buckets: which patterns are used together, a lifecycle status
-- in the catalog, and daily buckets that old hourly buckets roll up into.

-- Pairs of distinct patterns referenced by the same event (pattern_id_1 < pattern_id_2, in
-- byte order), kept exact by the flush in the same transaction as everything else.
CREATE TABLE IF NOT EXISTS pattern_cooccurrence (
    pattern_id_1       VARCHAR(255) NOT NULL,
    pattern_id_2       VARCHAR(255) NOT NULL,
    cooccurrence_count BIGINT NOT NULL CHECK (cooccurrence_count >= 0),
    last_seen_together TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pattern_id_1, pattern_id_2),
    CHECK (pattern_id_1 COLLATE "C" < pattern_id_2 COLLATE "C")
) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS idx_pattern_cooccurrence_2 ON pattern_cooccurrence (pattern_id_2);

-- Events that referenced more patterns than cooccurrence_max_patterns: their pairs are not
-- recorded (their uses are), and they are counted here so the gap is visible.
ALTER TABLE usage_topic_stats
    ADD COLUMN IF NOT EXISTS events_over_cooccurrence_limit BIGINT NOT NULL DEFAULT 0;
-- Events that referenced at least one valid pattern (the denominator of co-occurrence lift).
ALTER TABLE usage_topic_stats ADD COLUMN IF NOT EXISTS events_with_patterns BIGINT NOT NULL DEFAULT 0;

-- Lifecycle of a catalog pattern.
ALTER TABLE pattern_lineage_nodes ADD COLUMN IF NOT EXISTS status TEXT NOT NULL DEFAULT 'active';
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'pattern_lineage_nodes_status_check') THEN
        ALTER TABLE pattern_lineage_nodes ADD CONSTRAINT pattern_lineage_nodes_status_check
            CHECK (status IN ('active', 'deprecated', 'retired'));
    END IF;
END
$$;

-- Daily buckets (UTC days) for history older than the hourly retention.
CREATE TABLE IF NOT EXISTS pattern_usage_daily (
    pattern_id  VARCHAR(255) NOT NULL,
    day         DATE NOT NULL,
    usage_count BIGINT NOT NULL CHECK (usage_count >= 0),
    PRIMARY KEY (pattern_id, day)
) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS idx_pattern_usage_daily_day ON pattern_usage_daily USING BRIN (day);

-- Moves hourly buckets of whole UTC days before `cutoff` into daily buckets, in one
-- transaction, so every total stays the same. Returns the daily rows written.
CREATE OR REPLACE FUNCTION pt_rollup(cutoff TIMESTAMPTZ) RETURNS BIGINT
LANGUAGE plpgsql AS
$$
DECLARE
    day_cut TIMESTAMPTZ := date_trunc('day', cutoff AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    n BIGINT;
BEGIN
    WITH moved AS (
        DELETE FROM pattern_usage_hourly WHERE hour < day_cut
        RETURNING pattern_id, (hour AT TIME ZONE 'UTC')::date AS day, usage_count)
    INSERT INTO pattern_usage_daily AS d (pattern_id, day, usage_count)
    SELECT pattern_id, day, sum(usage_count) FROM moved GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (pattern_id, day) DO UPDATE SET usage_count = d.usage_count + EXCLUDED.usage_count;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- pt_flush with the co-occurrence pairs and the new topic counters; otherwise as in 004.
DROP FUNCTION IF EXISTS pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[],
    BIGINT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], BIGINT[],
    BIGINT[], TEXT[], INTEGER[], BIGINT[], TEXT[], TEXT[], BYTEA[], INTEGER[], BOOLEAN);

CREATE OR REPLACE FUNCTION pt_flush(
    p_group     TEXT,
    o_topic     TEXT[], o_part INTEGER[], o_expected BIGINT[], o_next BIGINT[],
    u_pattern   TEXT[], u_agent TEXT[], u_count BIGINT[], u_first BIGINT[], u_last BIGINT[],
    h_pattern   TEXT[], h_hour BIGINT[], h_count BIGINT[],
    t_topic     TEXT[], t_events BIGINT[], t_without BIGINT[], t_dead BIGINT[], t_flagged BIGINT[],
    d_topic     TEXT[], d_part INTEGER[], d_offset BIGINT[], d_reason TEXT[], d_detail TEXT[],
    d_payload   BYTEA[], d_size INTEGER[],
    t_with      BIGINT[], t_over BIGINT[],
    c_p1        TEXT[], c_p2 TEXT[], c_count BIGINT[], c_last BIGINT[],
    p_durable   BOOLEAN
) RETURNS INTEGER
LANGUAGE plpgsql AS
$$
DECLARE
    n_want INTEGER := coalesce(array_length(o_topic, 1), 0);
    n_upd  INTEGER := 0;
    n_ins  INTEGER := 0;
BEGIN
    -- Counts and offsets commit together, so a commit lost in a PostgreSQL crash only means
    -- those events are consumed again: Kafka batches need not wait for the WAL flush. A batch
    -- holding HTTP-ingested events (answered "stored" after this commit) must.
    IF NOT p_durable THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    IF n_want > 0 THEN
        UPDATE usage_consumer_offsets c
           SET next_offset = o.nxt, updated_at = now()
          FROM (SELECT * FROM unnest(o_topic, o_part, o_expected, o_next)
                         AS x(topic, part, expected, nxt)
                 WHERE expected >= 0) o
         WHERE c.group_id = p_group AND c.topic = o.topic AND c.partition = o.part
           AND c.next_offset = o.expected;
        GET DIAGNOSTICS n_upd = ROW_COUNT;
        INSERT INTO usage_consumer_offsets (group_id, topic, partition, next_offset)
        SELECT p_group, topic, part, nxt
          FROM unnest(o_topic, o_part, o_expected, o_next) AS x(topic, part, expected, nxt)
         WHERE expected < 0
         ORDER BY topic, part
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS n_ins = ROW_COUNT;
        IF n_upd + n_ins <> n_want THEN
            RAISE EXCEPTION 'offset conflict: another consumer of group % advanced a partition',
                p_group USING ERRCODE = 'PT409';
        END IF;
    END IF;

    IF coalesce(array_length(u_pattern, 1), 0) > 0 THEN
        -- Every event has exactly one agent, so a pattern's delta is the sum over its agents.
        INSERT INTO pattern_lineage_nodes AS n
               (pattern_id, usage_count, first_used_at, last_used_at, used_by_agents, registered)
        SELECT pattern, sum(cnt), pt_ts(min(f)), pt_ts(max(l)),
               array_agg(agent ORDER BY agent), false
          FROM unnest(u_pattern, u_agent, u_count, u_first, u_last) AS x(pattern, agent, cnt, f, l)
         GROUP BY pattern
         ORDER BY pattern
        ON CONFLICT (pattern_id) DO UPDATE SET
            usage_count   = coalesce(n.usage_count, 0) + EXCLUDED.usage_count,
            first_used_at = LEAST(n.first_used_at, EXCLUDED.first_used_at),
            last_used_at  = GREATEST(n.last_used_at, EXCLUDED.last_used_at),
            used_by_agents = CASE
                WHEN coalesce(n.used_by_agents, ARRAY[]::TEXT[]) @> EXCLUDED.used_by_agents
                    THEN n.used_by_agents
                ELSE ARRAY(SELECT DISTINCT a
                             FROM unnest(coalesce(n.used_by_agents, ARRAY[]::TEXT[])
                                         || EXCLUDED.used_by_agents) AS a
                            ORDER BY a)
            END;

        -- Most pairs exist: update them in place (HOT, thanks to the fill factor), then insert
        -- the new ones; ON CONFLICT covers a pair another instance inserted meanwhile.
        WITH d AS (SELECT * FROM unnest(u_pattern, u_agent, u_count, u_first, u_last)
                                 AS x(pattern, agent, cnt, f, l)),
             upd AS (UPDATE pattern_agent_usage p
                        SET usage_count   = p.usage_count + d.cnt,
                            first_used_at = LEAST(p.first_used_at, pt_ts(d.f)),
                            last_used_at  = GREATEST(p.last_used_at, pt_ts(d.l))
                       FROM d
                      WHERE p.pattern_id = d.pattern AND p.agent_name = d.agent
                  RETURNING p.pattern_id, p.agent_name)
        INSERT INTO pattern_agent_usage AS p
               (pattern_id, agent_name, usage_count, first_used_at, last_used_at)
        SELECT d.pattern, d.agent, d.cnt, pt_ts(d.f), pt_ts(d.l)
          FROM d
         WHERE NOT EXISTS (SELECT 1 FROM upd
                            WHERE upd.pattern_id = d.pattern AND upd.agent_name = d.agent)
         ORDER BY d.pattern, d.agent
        ON CONFLICT (pattern_id, agent_name) DO UPDATE SET
            usage_count   = p.usage_count + EXCLUDED.usage_count,
            first_used_at = LEAST(p.first_used_at, EXCLUDED.first_used_at),
            last_used_at  = GREATEST(p.last_used_at, EXCLUDED.last_used_at);
    END IF;

    IF coalesce(array_length(h_pattern, 1), 0) > 0 THEN
        WITH d AS (SELECT pattern, pt_ts(hr * 3600000000) AS hour, cnt
                     FROM unnest(h_pattern, h_hour, h_count) AS x(pattern, hr, cnt)),
             upd AS (UPDATE pattern_usage_hourly h
                        SET usage_count = h.usage_count + d.cnt
                       FROM d
                      WHERE h.pattern_id = d.pattern AND h.hour = d.hour
                  RETURNING h.pattern_id, h.hour)
        INSERT INTO pattern_usage_hourly AS h (pattern_id, hour, usage_count)
        SELECT d.pattern, d.hour, d.cnt
          FROM d
         WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.pattern_id = d.pattern AND upd.hour = d.hour)
         ORDER BY d.pattern, d.hour
        ON CONFLICT (pattern_id, hour) DO UPDATE SET
            usage_count = h.usage_count + EXCLUDED.usage_count;
    END IF;

    IF coalesce(array_length(t_topic, 1), 0) > 0 THEN
        INSERT INTO usage_topic_stats AS s
               (topic, events, events_without_patterns, dead_letters, flagged_events,
                events_with_patterns, events_over_cooccurrence_limit)
        SELECT * FROM unnest(t_topic, t_events, t_without, t_dead, t_flagged, t_with, t_over)
         ORDER BY 1
        ON CONFLICT (topic) DO UPDATE SET
            events                  = s.events + EXCLUDED.events,
            events_without_patterns = s.events_without_patterns + EXCLUDED.events_without_patterns,
            dead_letters            = s.dead_letters + EXCLUDED.dead_letters,
            flagged_events          = s.flagged_events + EXCLUDED.flagged_events,
            events_with_patterns    = s.events_with_patterns + EXCLUDED.events_with_patterns,
            events_over_cooccurrence_limit =
                s.events_over_cooccurrence_limit + EXCLUDED.events_over_cooccurrence_limit,
            updated_at              = now();
    END IF;

    IF coalesce(array_length(c_p1, 1), 0) > 0 THEN
        WITH d AS (SELECT * FROM unnest(c_p1, c_p2, c_count, c_last) AS x(p1, p2, cnt, l)),
             upd AS (UPDATE pattern_cooccurrence c
                        SET cooccurrence_count = c.cooccurrence_count + d.cnt,
                            last_seen_together = GREATEST(c.last_seen_together, pt_ts(d.l))
                       FROM d
                      WHERE c.pattern_id_1 = d.p1 AND c.pattern_id_2 = d.p2
                  RETURNING c.pattern_id_1, c.pattern_id_2)
        INSERT INTO pattern_cooccurrence AS c
               (pattern_id_1, pattern_id_2, cooccurrence_count, last_seen_together)
        SELECT d.p1, d.p2, d.cnt, pt_ts(d.l)
          FROM d
         WHERE NOT EXISTS (SELECT 1 FROM upd
                            WHERE upd.pattern_id_1 = d.p1 AND upd.pattern_id_2 = d.p2)
         ORDER BY d.p1, d.p2
        ON CONFLICT (pattern_id_1, pattern_id_2) DO UPDATE SET
            cooccurrence_count = c.cooccurrence_count + EXCLUDED.cooccurrence_count,
            last_seen_together = GREATEST(c.last_seen_together, EXCLUDED.last_seen_together);
    END IF;

    IF coalesce(array_length(d_topic, 1), 0) > 0 THEN
        INSERT INTO usage_dead_letters
               (topic, partition, kafka_offset, reason, detail, payload, payload_size, truncated)
        SELECT topic, part, off, reason, detail, payload, size, size > octet_length(payload)
          FROM unnest(d_topic, d_part, d_offset, d_reason, d_detail, d_payload, d_size)
               AS x(topic, part, off, reason, detail, payload, size);
    END IF;

    RETURN n_want;
END
$$;
