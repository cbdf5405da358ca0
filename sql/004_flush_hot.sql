-- 004: a faster flush. Updates of existing (pattern, agent) and (pattern, hour) rows become
-- HOT updates (free space kept in each page, no index entries written), new rows are inserted
-- after, and Kafka-only batches commit without waiting for the WAL flush (p_durable; see below).
-- Same contract as 002 otherwise: offsets by compare-and-set first (SQLSTATE PT409), then every
-- delta set-based, in key order.

ALTER TABLE pattern_agent_usage SET (fillfactor = 70);
ALTER TABLE pattern_usage_hourly SET (fillfactor = 70);

DROP FUNCTION IF EXISTS pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[],
    BIGINT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], BIGINT[],
    BIGINT[], TEXT[], INTEGER[], BIGINT[], TEXT[], TEXT[], BYTEA[], INTEGER[]);

CREATE OR REPLACE FUNCTION pt_flush(
    p_group     TEXT,
    o_topic     TEXT[], o_part INTEGER[], o_expected BIGINT[], o_next BIGINT[],
    u_pattern   TEXT[], u_agent TEXT[], u_count BIGINT[], u_first BIGINT[], u_last BIGINT[],
    h_pattern   TEXT[], h_hour BIGINT[], h_count BIGINT[],
    t_topic     TEXT[], t_events BIGINT[], t_without BIGINT[], t_dead BIGINT[], t_flagged BIGINT[],
    d_topic     TEXT[], d_part INTEGER[], d_offset BIGINT[], d_reason TEXT[], d_detail TEXT[],
    d_payload   BYTEA[], d_size INTEGER[],
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
               (topic, events, events_without_patterns, dead_letters, flagged_events)
        SELECT * FROM unnest(t_topic, t_events, t_without, t_dead, t_flagged)
         ORDER BY 1
        ON CONFLICT (topic) DO UPDATE SET
            events                  = s.events + EXCLUDED.events,
            events_without_patterns = s.events_without_patterns + EXCLUDED.events_without_patterns,
            dead_letters            = s.dead_letters + EXCLUDED.dead_letters,
            flagged_events          = s.flagged_events + EXCLUDED.flagged_events,
            updated_at              = now();
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
