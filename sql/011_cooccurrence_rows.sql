-- 011: co-occurrence merges at the cost of their rows. Measured on 100,000 events (8 patterns
-- at most per event, 275,695 new pairs): a merge of everything took 10.9 s, of which 6.3 s were
-- probes of pattern_cooccurrence through idx_pattern_cooccurrence_2 (pattern_id_2 alone): the
-- planner, with statistics of a table still small, preferred it to the primary key, and every
-- probe then walked all rows of its pattern_id_2. That index now holds both columns, so either
-- index finds a pair in one descent. The rest:
--  - the flush no longer groups the batch's pairs by pattern in SQL: the engine sends the rows
--    ready (partners in byte order; n_low of them sort below the row's pattern);
--  - so a merge unnests only the partners above each row's pattern (each pair once) instead of
--    unnesting both sides and dropping half, and sorts in byte order ("C": no strcoll).
-- And /cooccurrence/top no longer sorts all of pattern_cooccurrence (330 ms for 974,510 pairs,
-- after every flush, since answers are cached only until new data commits): the merge keeps
-- pattern_cooccurrence_top, the pt_cooccurrence_top_k() best pairs.

-- As in 008: flushes of engines still running the previous pt_flush wait until this commits.
LOCK TABLE pattern_agent_usage, pattern_lineage_nodes IN SHARE MODE;

-- Rows pending from 010's flushes have their partners in no order: merge them all now (waiting
-- for a merge an engine may be running), and refuse to go on if any is left.
SELECT pg_advisory_xact_lock(7412503912);
SELECT pt_merge_cooccurrence(2147483647);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pattern_cooccurrence_pending) THEN
        RAISE EXCEPTION 'pattern_cooccurrence_pending is not empty after merging it';
    END IF;
END
$$;
ALTER TABLE pattern_cooccurrence_pending
    ADD COLUMN IF NOT EXISTS n_low INTEGER NOT NULL, -- the table is empty (above)
    DROP CONSTRAINT IF EXISTS pattern_cooccurrence_pending_n_low,
    DROP CONSTRAINT IF EXISTS pattern_cooccurrence_pending_no_null,
    ADD CONSTRAINT pattern_cooccurrence_pending_n_low CHECK (n_low >= 0 AND n_low <= n),
    -- the engine writes these arrays as literals: a partner misread as NULL fails the flush
    ADD CONSTRAINT pattern_cooccurrence_pending_no_null
        CHECK (array_position(partners, NULL) IS NULL);

CREATE INDEX IF NOT EXISTS idx_pattern_cooccurrence_21
    ON pattern_cooccurrence (pattern_id_2, pattern_id_1);
DROP INDEX IF EXISTS idx_pattern_cooccurrence_2;

-- The route's largest limit: the top is exact for any limit up to it.
CREATE OR REPLACE FUNCTION pt_cooccurrence_top_k() RETURNS INTEGER
LANGUAGE sql IMMUTABLE AS $$ SELECT 100 $$;

-- The pt_cooccurrence_top_k() first pairs of pattern_cooccurrence by count descending, then
-- pattern_id_1 and pattern_id_2 in byte order, with their current counts. Only merges write
-- pattern_cooccurrence, and every merge updates this in the same transaction.
CREATE TABLE IF NOT EXISTS pattern_cooccurrence_top (
    pattern_id_1       TEXT NOT NULL,
    pattern_id_2       TEXT NOT NULL,
    cooccurrence_count BIGINT NOT NULL,
    PRIMARY KEY (pattern_id_1, pattern_id_2)
);
CREATE OR REPLACE FUNCTION pt_rebuild_cooccurrence_top() RETURNS VOID
LANGUAGE sql AS
$$
    DELETE FROM pattern_cooccurrence_top;
    INSERT INTO pattern_cooccurrence_top (pattern_id_1, pattern_id_2, cooccurrence_count)
    SELECT pattern_id_1, pattern_id_2, cooccurrence_count FROM pattern_cooccurrence
     ORDER BY cooccurrence_count DESC, pattern_id_1 COLLATE "C", pattern_id_2 COLLATE "C"
     LIMIT pt_cooccurrence_top_k();
$$;
SELECT pt_rebuild_cooccurrence_top();

CREATE OR REPLACE VIEW pattern_cooccurrence_pending_pairs AS
SELECT p.pattern_id AS pattern_id_1, x.other AS pattern_id_2, x.cnt AS cooccurrence_count,
       pt_ts(x.l) AS last_seen_together
  FROM pattern_cooccurrence_pending p,
       unnest(p.partners[p.n_low + 1:], p.cnt[p.n_low + 1:], p.last_us[p.n_low + 1:])
       AS x(other, cnt, l);

CREATE OR REPLACE FUNCTION pt_merge_cooccurrence(p_max_pairs INTEGER, OUT taken BIGINT,
                                                 OUT pending BIGINT)
LANGUAGE plpgsql
SET work_mem = '64MB' SET jit = off SET max_parallel_workers_per_gather = 0
-- The planner sees how many pairs the arrays hold and would rather hash all of
-- pattern_cooccurrence than probe its index that many times; probing is what scales with the
-- merge and not with the table.
SET enable_hashjoin = off SET enable_mergejoin = off
AS
$$
DECLARE
    c_p1    TEXT[];
    c_p2    TEXT[];
    c_count BIGINT[];
    c_last  BIGINT[];
    f_p1    TEXT;
    f_p2    TEXT;
    f_count BIGINT;
    k_p1    TEXT[];
    k_p2    TEXT[];
    k_count BIGINT[];
BEGIN
    IF NOT pg_try_advisory_xact_lock(7412503912) THEN
        taken := -1;
        SELECT coalesce(sum(n), 0) / 2 INTO pending FROM pattern_cooccurrence_pending;
        RETURN;
    END IF;
    -- Rows a flush has not committed yet are not seen here, and stay for the next merge.
    WITH f AS (SELECT flush_id, sum(n) / 2 AS pairs FROM pattern_cooccurrence_pending
                GROUP BY flush_id),
         pick AS (SELECT flush_id FROM (SELECT flush_id, sum(pairs) OVER (ORDER BY flush_id)
                                                         - pairs AS before
                                          FROM f) s
                   WHERE before < greatest(p_max_pairs, 1)),
         gone AS (DELETE FROM pattern_cooccurrence_pending p USING pick
                   WHERE p.flush_id = pick.flush_id
               RETURNING p.pattern_id, p.n, p.n_low, p.partners, p.cnt, p.last_us),
         t AS (SELECT sum(n) / 2 AS n FROM gone),
         -- each pair once: from the row of its first pattern
         g AS (SELECT gone.pattern_id AS a, x.b, sum(x.c) AS c, max(x.l) AS l
                 FROM gone, unnest(gone.partners[gone.n_low + 1:], gone.cnt[gone.n_low + 1:],
                                   gone.last_us[gone.n_low + 1:]) AS x(b, c, l)
                GROUP BY gone.pattern_id, x.b)
    -- In byte order: the primary key's order where the database's collation is C or C.UTF-8,
    -- so that the upsert walks it in order.
    SELECT (SELECT coalesce(n, 0) FROM t), array_agg(a), array_agg(b), array_agg(c),
           array_agg(l)
      INTO taken, c_p1, c_p2, c_count, c_last
      FROM (SELECT * FROM g ORDER BY a COLLATE "C", b COLLATE "C") o;
    IF coalesce(array_length(c_p1, 1), 0) > 0 THEN
        SELECT pattern_id_1, pattern_id_2, cooccurrence_count INTO f_p1, f_p2, f_count
          FROM pattern_cooccurrence_top
         ORDER BY cooccurrence_count DESC, pattern_id_1 COLLATE "C", pattern_id_2 COLLATE "C"
        OFFSET pt_cooccurrence_top_k() - 1 LIMIT 1;
        -- One probe of the primary key per pair finds the row to add to (by its ctid) or none.
        -- Only merges write pattern_cooccurrence, one at a time (the lock above): a pair found
        -- missing here cannot appear before the insert, so it needs no ON CONFLICT.
        WITH d AS (SELECT * FROM unnest(c_p1, c_p2, c_count, c_last) AS x(p1, p2, cnt, l)),
             j AS MATERIALIZED (SELECT d.p1, d.p2, d.cnt, d.l, c.ctid AS tid
                                  FROM d LEFT JOIN pattern_cooccurrence c
                                    ON c.pattern_id_1 = d.p1 AND c.pattern_id_2 = d.p2),
             upd AS (UPDATE pattern_cooccurrence c
                        SET cooccurrence_count = c.cooccurrence_count + j.cnt,
                            last_seen_together = GREATEST(c.last_seen_together, pt_ts(j.l))
                       FROM j
                      WHERE j.tid IS NOT NULL AND c.ctid = j.tid
                  RETURNING c.pattern_id_1 AS p1, c.pattern_id_2 AS p2,
                            c.cooccurrence_count AS cnt),
             ins AS (INSERT INTO pattern_cooccurrence
                            (pattern_id_1, pattern_id_2, cooccurrence_count, last_seen_together)
                     SELECT p1, p2, cnt, pt_ts(l) FROM j WHERE tid IS NULL
                  RETURNING pattern_id_1 AS p1, pattern_id_2 AS p2, cooccurrence_count AS cnt)
        -- The pairs that now rank at or above the top's last entry (all of them while the top
        -- is not full). Counts only grow, so a member merged now is among them, and a pair
        -- neither merged now nor a member ranks below every member.
        SELECT array_agg(m.p1), array_agg(m.p2), array_agg(m.cnt)
          INTO k_p1, k_p2, k_count
          FROM (SELECT * FROM upd UNION ALL SELECT * FROM ins) m
         WHERE f_count IS NULL OR m.cnt > f_count
            OR (m.cnt = f_count AND (m.p1 COLLATE "C" < f_p1 COLLATE "C"
                                     OR (m.p1 = f_p1 AND m.p2 COLLATE "C" <= f_p2 COLLATE "C")));
        IF k_p1 IS NOT NULL THEN
            SELECT array_agg(p1), array_agg(p2), array_agg(cnt) INTO k_p1, k_p2, k_count
              FROM (SELECT * FROM (SELECT * FROM unnest(k_p1, k_p2, k_count) AS x(p1, p2, cnt)
                                   UNION ALL
                                   SELECT t.pattern_id_1, t.pattern_id_2, t.cooccurrence_count
                                     FROM pattern_cooccurrence_top t
                                    WHERE (t.pattern_id_1, t.pattern_id_2) NOT IN
                                          (SELECT * FROM unnest(k_p1, k_p2))) u
                     ORDER BY cnt DESC, p1 COLLATE "C", p2 COLLATE "C"
                     LIMIT pt_cooccurrence_top_k()) k;
            DELETE FROM pattern_cooccurrence_top;
            INSERT INTO pattern_cooccurrence_top (pattern_id_1, pattern_id_2, cooccurrence_count)
            SELECT * FROM unnest(k_p1, k_p2, k_count);
        END IF;
    END IF;
    SELECT coalesce(sum(n), 0) / 2 INTO pending FROM pattern_cooccurrence_pending;
END
$$;

-- pt_flush as in 010, except that the engine sends the pending rows already grouped.
DROP FUNCTION IF EXISTS pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[], BIGINT[],
                       BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[],
                       BIGINT[], BIGINT[], TEXT[], INTEGER[], BIGINT[], TEXT[], TEXT[], BYTEA[],
                       INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[], BIGINT[], BIGINT[], BOOLEAN);

CREATE OR REPLACE FUNCTION pt_flush(
    p_group     TEXT,
    o_topic     TEXT[], o_part INTEGER[], o_expected BIGINT[], o_next BIGINT[],
    u_pattern   TEXT[], u_agent TEXT[], u_count BIGINT[], u_first BIGINT[], u_last BIGINT[],
    h_pattern   TEXT[], h_hour BIGINT[], h_count BIGINT[],
    t_topic     TEXT[], t_events BIGINT[], t_without BIGINT[], t_dead BIGINT[], t_flagged BIGINT[],
    d_topic     TEXT[], d_part INTEGER[], d_offset BIGINT[], d_reason TEXT[], d_detail TEXT[],
    d_payload   BYTEA[], d_size INTEGER[],
    t_with      BIGINT[], t_over BIGINT[],
    c_pattern   TEXT[], c_n INTEGER[], c_low INTEGER[], c_partners TEXT[], c_cnt TEXT[],
    c_last      TEXT[],
    p_durable   BOOLEAN
) RETURNS INTEGER
LANGUAGE plpgsql
SET work_mem = '64MB' SET jit = off SET max_parallel_workers_per_gather = 0
-- The planner cannot see how many rows the unnest()s hold and joined a flush's 50,000 keys to
-- all 2.5 M (pattern, agent) rows by a sequential scan and a hash (4.0 s); by index it takes
-- 1.5 s. Every statement here touches few rows of large tables by key.
SET enable_seqscan = off
AS
$$
DECLARE
    v_flush BIGINT;
    n_want INTEGER := coalesce(array_length(o_topic, 1), 0);
    n_upd  INTEGER := 0;
    n_ins  INTEGER := 0;
    a_agent TEXT[];
    a_count BIGINT[];
    a_new   BIGINT[];
    a_first TIMESTAMPTZ[];
    a_last  TIMESTAMPTZ[];
    y_agent TEXT[];
    y_type  TEXT[];
    y_count BIGINT[];
    y_new   BIGINT[];
    y_first TIMESTAMPTZ[];
    y_last  TIMESTAMPTZ[];
    k_agent   TEXT[];
    k_pattern TEXT[];
    k_count   BIGINT[];
BEGIN
    LOCK TABLE agent_type_usage IN ROW EXCLUSIVE MODE;
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
                  RETURNING p.pattern_id, p.agent_name, p.usage_count),
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
                     RETURNING p.pattern_id, p.agent_name, p.xmax = 0 AS fresh, p.usage_count),
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
                     RETURNING n.pattern_id, coalesce(n.pattern_type, 'unknown') AS typ),
             -- New counts that beat the agent's floor as this statement sees it (checked
             -- again under the agent's row lock below; a floor seen lower only lets more by),
             -- at most k per agent: one beaten by k others of this flush cannot be in the top.
             cand AS (SELECT pattern_id, agent_name, usage_count
                        FROM (SELECT c.*,
                                     row_number() OVER (PARTITION BY c.agent_name COLLATE "C"
                                                        ORDER BY c.usage_count DESC,
                                                                 c.pattern_id COLLATE "C") AS rn
                                FROM (SELECT pattern_id, agent_name, usage_count FROM upd
                                      UNION ALL
                                      SELECT pattern_id, agent_name, usage_count FROM ins) c
                                LEFT JOIN agent_usage_totals t ON t.agent_name = c.agent_name
                               WHERE pt_beats_floor(c.usage_count, c.pattern_id,
                                                    t.top_floor_count, t.top_floor_pattern)) x
                       WHERE rn <= pt_agent_top_k())
        SELECT g.*, y.*, k.*
          INTO a_agent, a_count, a_new, a_first, a_last,
               y_agent, y_type, y_count, y_new, y_first, y_last,
               k_agent, k_pattern, k_count
          FROM (SELECT array_agg(g.agent ORDER BY g.agent), array_agg(g.cnt ORDER BY g.agent),
                       array_agg(coalesce(nf.n, 0) ORDER BY g.agent),
                       array_agg(g.f ORDER BY g.agent), array_agg(g.l ORDER BY g.agent)
                  FROM (SELECT agent, sum(cnt) AS cnt, pt_ts(min(f)) AS f, pt_ts(max(l)) AS l
                          FROM d GROUP BY agent) g
                  LEFT JOIN (SELECT agent_name, count(*) AS n FROM fresh GROUP BY agent_name) nf
                    ON nf.agent_name = g.agent) g,
               (SELECT array_agg(agent ORDER BY agent, typ), array_agg(typ ORDER BY agent, typ),
                       array_agg(cnt ORDER BY agent, typ), array_agg(n ORDER BY agent, typ),
                       array_agg(f ORDER BY agent, typ), array_agg(l ORDER BY agent, typ)
                  FROM (SELECT d.agent, pat.typ, sum(d.cnt) AS cnt, count(fresh.pattern_id) AS n,
                               pt_ts(min(d.f)) AS f, pt_ts(max(d.l)) AS l
                          FROM d
                          JOIN pat ON pat.pattern_id = d.pattern
                          LEFT JOIN fresh ON fresh.pattern_id = d.pattern
                                         AND fresh.agent_name = d.agent
                         GROUP BY d.agent, pat.typ) x) y,
               (SELECT array_agg(agent_name), array_agg(pattern_id), array_agg(usage_count)
                  FROM cand) k;
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

    -- The batch's pairs go in under both their patterns, merged into pattern_cooccurrence later
    -- by pt_merge_cooccurrence: committed with the offsets, so exactly once all the same. The
    -- engine groups them (one row per pattern, partners in byte order, the n_low below the
    -- pattern first) and sends each row's arrays as array literals: grouping 700,000 pair sides
    -- per 100,000 events here took 2.1 s.
    IF coalesce(array_length(c_pattern, 1), 0) > 0 THEN
        -- one flush_id for all its rows: a merge takes a flush whole (both rows of each pair)
        v_flush := nextval('pattern_cooccurrence_flush_seq');
        INSERT INTO pattern_cooccurrence_pending
               (flush_id, pattern_id, n, n_low, partners, cnt, last_us)
        SELECT v_flush, x.pat, x.n, x.low, x.partners::text[], x.cnt::bigint[], x.l::bigint[]
          FROM unnest(c_pattern, c_n, c_low, c_partners, c_cnt, c_last)
               AS x(pat, n, low, partners, cnt, l);
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
    -- The agents' rows above stay locked until the commit, so from here on no other flush
    -- changes these agents' profiles: the floors read below are current.
    IF y_agent IS NOT NULL THEN
        INSERT INTO agent_type_usage AS t
               (agent_name, pattern_type, usage_count, patterns, first_used_at, last_used_at)
        SELECT * FROM unnest(y_agent, y_type, y_count, y_new, y_first, y_last)
        ON CONFLICT (agent_name, pattern_type) DO UPDATE SET
            usage_count   = t.usage_count + EXCLUDED.usage_count,
            patterns      = t.patterns + EXCLUDED.patterns,
            first_used_at = LEAST(t.first_used_at, EXCLUDED.first_used_at),
            last_used_at  = GREATEST(t.last_used_at, EXCLUDED.last_used_at);
    END IF;
    IF k_agent IS NOT NULL THEN
        -- Members of an agent's top get their new count in place (most candidates, once the
        -- floors have risen); the others that beat the current floor are merged with the
        -- agent's top, which keeps the k best and sets the floor to the k-th.
        WITH c AS (SELECT x.agent, x.pattern, x.cnt
                     FROM unnest(k_agent, k_pattern, k_count) AS x(agent, pattern, cnt)
                     JOIN agent_usage_totals t ON t.agent_name = x.agent
                    WHERE pt_beats_floor(x.cnt, x.pattern, t.top_floor_count,
                                         t.top_floor_pattern)),
             upd AS (UPDATE agent_top_patterns p
                        SET usage_count = c.cnt
                       FROM c
                      WHERE p.agent_name = c.agent AND p.pattern_id = c.pattern
                  RETURNING p.agent_name, p.pattern_id)
        SELECT array_agg(c.agent), array_agg(c.pattern), array_agg(c.cnt)
          INTO k_agent, k_pattern, k_count
          FROM c
         WHERE NOT EXISTS (SELECT 1 FROM upd
                            WHERE upd.agent_name = c.agent AND upd.pattern_id = c.pattern);
        IF k_agent IS NOT NULL THEN
            WITH c AS (SELECT * FROM unnest(k_agent, k_pattern, k_count) AS x(agent, pattern, cnt)),
                 r AS (SELECT u.*,
                              row_number() OVER (PARTITION BY agent COLLATE "C"
                                                 ORDER BY cnt DESC, pattern COLLATE "C") AS rn
                         FROM (SELECT agent, pattern, cnt, true AS fresh FROM c
                               UNION ALL
                               SELECT p.agent_name, p.pattern_id, p.usage_count, false
                                 FROM agent_top_patterns p
                                WHERE p.agent_name IN (SELECT agent FROM c)) u),
                 del AS (DELETE FROM agent_top_patterns p
                          USING r
                          WHERE p.agent_name = r.agent AND p.pattern_id = r.pattern
                            AND NOT r.fresh AND r.rn > pt_agent_top_k()),
                 ins AS (INSERT INTO agent_top_patterns (agent_name, pattern_id, usage_count)
                         SELECT agent, pattern, cnt FROM r
                          WHERE fresh AND rn <= pt_agent_top_k()
                          ORDER BY agent, pattern)
            UPDATE agent_usage_totals a
               SET top_floor_count = r.cnt, top_floor_pattern = r.pattern
              FROM r
             WHERE a.agent_name = r.agent AND r.rn = pt_agent_top_k();
        END IF;
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
