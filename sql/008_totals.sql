-- 008: totals that whole-table answers used to compute per request, now kept current by the
-- flush in the same transaction as the counts (so they are exactly-once too), and a cheaper
-- flush for patterns used by many agents.
--
-- At 100,000 patterns and ~2 M (pattern, agent) rows, /api/agents grouped all of
-- pattern_agent_usage (seconds), /summary counted its distinct agents (0.5 s) and the overall
-- heatmap summed every hourly bucket (5 s). Per agent and per hour there are only a thousand
-- or so rows, so keeping them current costs the flush little.

-- Concurrent flushes of engines still running the previous pt_flush must not commit between the
-- backfill below and this migration's commit (their counts would be missing from the totals):
-- SHARE mode lets them wait until the new pt_flush is in place.
LOCK TABLE pattern_agent_usage, pattern_usage_hourly, pattern_usage_daily IN SHARE MODE;

-- Per agent: uses (an event referencing k patterns counts k), distinct patterns, first and last
-- event time; the sums over pattern_agent_usage.
CREATE TABLE IF NOT EXISTS agent_usage_totals (
    agent_name        TEXT PRIMARY KEY,
    usage_count       BIGINT NOT NULL CHECK (usage_count >= 0),
    distinct_patterns BIGINT NOT NULL CHECK (distinct_patterns >= 0),
    first_used_at     TIMESTAMPTZ NOT NULL,
    last_used_at      TIMESTAMPTZ NOT NULL
) WITH (fillfactor = 70);

-- Per UTC hour (and, after the rollup, per UTC day): uses of all patterns; the sums over
-- pattern_usage_hourly (pattern_usage_daily) per hour (day), rolled up with them.
CREATE TABLE IF NOT EXISTS usage_hourly_totals (
    hour        TIMESTAMPTZ PRIMARY KEY,
    usage_count BIGINT NOT NULL CHECK (usage_count >= 0)
) WITH (fillfactor = 70);
CREATE TABLE IF NOT EXISTS usage_daily_totals (
    day         DATE PRIMARY KEY,
    usage_count BIGINT NOT NULL CHECK (usage_count >= 0)
);

-- Recomputes the three tables from the per-pattern tables: the backfill here, and for data
-- written by something other than pt_flush (bench/api.sh seeds with SQL).
CREATE OR REPLACE FUNCTION pt_rebuild_totals() RETURNS VOID
LANGUAGE sql AS
$$
    DELETE FROM agent_usage_totals;
    INSERT INTO agent_usage_totals
    SELECT agent_name, sum(usage_count), count(*), min(first_used_at), max(last_used_at)
      FROM pattern_agent_usage GROUP BY agent_name;
    DELETE FROM usage_hourly_totals;
    INSERT INTO usage_hourly_totals
    SELECT hour, sum(usage_count) FROM pattern_usage_hourly GROUP BY hour;
    DELETE FROM usage_daily_totals;
    INSERT INTO usage_daily_totals
    SELECT day, sum(usage_count) FROM pattern_usage_daily GROUP BY day;
$$;
SELECT pt_rebuild_totals();

-- Nothing queries used_by_agents through this index (by-agent answers come from
-- pattern_agent_usage), and a GIN index costs an entry per array element on every update of a
-- row: a flush touching a pattern with 400 agents wrote 400 index entries for it, each time.
DROP INDEX IF EXISTS idx_pattern_lineage_used_by_agents;

-- The rollup moves the overall hourly totals into daily ones with the per-pattern buckets.
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
    WITH moved AS (
        DELETE FROM usage_hourly_totals WHERE hour < day_cut
        RETURNING (hour AT TIME ZONE 'UTC')::date AS day, usage_count)
    INSERT INTO usage_daily_totals AS d (day, usage_count)
    SELECT day, sum(usage_count) FROM moved GROUP BY 1 ORDER BY 1
    ON CONFLICT (day) DO UPDATE SET usage_count = d.usage_count + EXCLUDED.usage_count;
    RETURN n;
END
$$;

-- pt_flush as in 005, except:
--  * pattern_agent_usage is written first, and reports which (pattern, agent) pairs are new;
--    only those agents are merged into used_by_agents (before, every flush compared each
--    pattern's whole agent array with the batch's agents);
--  * agent_usage_totals and usage_hourly_totals are kept current;
--  * the settings of 006 and 007 are part of the definition (CREATE OR REPLACE resets them).
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
LANGUAGE plpgsql
SET work_mem = '64MB' SET jit = off SET max_parallel_workers_per_gather = 0
AS
$$
DECLARE
    n_want INTEGER := coalesce(array_length(o_topic, 1), 0);
    n_upd  INTEGER := 0;
    n_ins  INTEGER := 0;
    a_agent TEXT[];
    a_count BIGINT[];
    a_new   BIGINT[];
    a_first TIMESTAMPTZ[];
    a_last  TIMESTAMPTZ[];
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
        -- Most pairs exist: update them in place (HOT, thanks to the fill factor), then insert
        -- the new ones; ON CONFLICT covers a pair another instance inserted meanwhile (xmax = 0
        -- tells a row this statement inserted from one it updated on conflict). Every event has
        -- exactly one agent, so a pattern's (and an agent's) delta is the sum of its pairs'.
        WITH d AS (SELECT * FROM unnest(u_pattern, u_agent, u_count, u_first, u_last)
                                 AS x(pattern, agent, cnt, f, l)),
             upd AS (UPDATE pattern_agent_usage p
                        SET usage_count   = p.usage_count + d.cnt,
                            first_used_at = LEAST(p.first_used_at, pt_ts(d.f)),
                            last_used_at  = GREATEST(p.last_used_at, pt_ts(d.l))
                       FROM d
                      WHERE p.pattern_id = d.pattern AND p.agent_name = d.agent
                  RETURNING p.pattern_id, p.agent_name),
             ins AS (INSERT INTO pattern_agent_usage AS p
                            (pattern_id, agent_name, usage_count, first_used_at, last_used_at)
                     SELECT d.pattern, d.agent, d.cnt, pt_ts(d.f), pt_ts(d.l)
                       FROM d
                      WHERE NOT EXISTS (SELECT 1 FROM upd
                                         WHERE upd.pattern_id = d.pattern
                                           AND upd.agent_name = d.agent)
                      ORDER BY d.pattern, d.agent
                     ON CONFLICT (pattern_id, agent_name) DO UPDATE SET
                         usage_count   = p.usage_count + EXCLUDED.usage_count,
                         first_used_at = LEAST(p.first_used_at, EXCLUDED.first_used_at),
                         last_used_at  = GREATEST(p.last_used_at, EXCLUDED.last_used_at)
                     RETURNING p.pattern_id, p.agent_name, p.xmax = 0 AS fresh),
             fresh AS (SELECT pattern_id, agent_name FROM ins WHERE fresh),
             pat AS (INSERT INTO pattern_lineage_nodes AS n
                            (pattern_id, usage_count, first_used_at, last_used_at, used_by_agents,
                             registered)
                     SELECT t.pattern, t.cnt, t.f, t.l, coalesce(fa.agents, ARRAY[]::TEXT[]),
                            false
                       FROM (SELECT pattern, sum(cnt) AS cnt, pt_ts(min(f)) AS f,
                                    pt_ts(max(l)) AS l
                               FROM d GROUP BY pattern) t
                       LEFT JOIN (SELECT pattern_id,
                                         array_agg(agent_name ORDER BY agent_name) AS agents
                                    FROM fresh GROUP BY pattern_id) fa
                         ON fa.pattern_id = t.pattern
                      ORDER BY t.pattern
                     ON CONFLICT (pattern_id) DO UPDATE SET
                         usage_count   = coalesce(n.usage_count, 0) + EXCLUDED.usage_count,
                         first_used_at = LEAST(n.first_used_at, EXCLUDED.first_used_at),
                         last_used_at  = GREATEST(n.last_used_at, EXCLUDED.last_used_at),
                         used_by_agents = CASE
                             WHEN cardinality(EXCLUDED.used_by_agents) = 0
                                 THEN coalesce(n.used_by_agents, ARRAY[]::TEXT[])
                             ELSE ARRAY(SELECT DISTINCT a
                                          FROM unnest(coalesce(n.used_by_agents, ARRAY[]::TEXT[])
                                                      || EXCLUDED.used_by_agents) AS a
                                         ORDER BY a)
                         END
                     )
        SELECT array_agg(g.agent ORDER BY g.agent), array_agg(g.cnt ORDER BY g.agent),
               array_agg(coalesce(nf.n, 0) ORDER BY g.agent), array_agg(g.f ORDER BY g.agent),
               array_agg(g.l ORDER BY g.agent)
          INTO a_agent, a_count, a_new, a_first, a_last
          FROM (SELECT agent, sum(cnt) AS cnt, pt_ts(min(f)) AS f, pt_ts(max(l)) AS l
                  FROM d GROUP BY agent) g
          LEFT JOIN (SELECT agent_name, count(*) AS n FROM fresh GROUP BY agent_name) nf
            ON nf.agent_name = g.agent;
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

    -- Rows every flush of every engine touches (the current hour, the busy agents, the topics)
    -- come last, each table in key order: their row locks are held only until the commit, and
    -- concurrent flushes take them in the same order (no deadlock).
    IF a_agent IS NOT NULL THEN
        INSERT INTO agent_usage_totals AS a
               (agent_name, usage_count, distinct_patterns, first_used_at, last_used_at)
        SELECT * FROM unnest(a_agent, a_count, a_new, a_first, a_last)
        ON CONFLICT (agent_name) DO UPDATE SET
            usage_count       = a.usage_count + EXCLUDED.usage_count,
            distinct_patterns = a.distinct_patterns + EXCLUDED.distinct_patterns,
            first_used_at     = LEAST(a.first_used_at, EXCLUDED.first_used_at),
            last_used_at      = GREATEST(a.last_used_at, EXCLUDED.last_used_at);
    END IF;
    IF coalesce(array_length(h_hour, 1), 0) > 0 THEN
        INSERT INTO usage_hourly_totals AS t (hour, usage_count)
        SELECT pt_ts(hr * 3600000000), sum(cnt)
          FROM unnest(h_hour, h_count) AS x(hr, cnt)
         GROUP BY hr
         ORDER BY hr
        ON CONFLICT (hour) DO UPDATE SET usage_count = t.usage_count + EXCLUDED.usage_count;
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

    RETURN n_want;
END
$$;
