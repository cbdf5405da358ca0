-- 012: co-occurrence as partner lists. A pattern's partners, with each pair's count and last
-- time, are one bytea (the layout is in src/cooc.h: partners in byte order, a length byte, the
-- partner, big-endian count and last time), in one row per pattern for what is merged
-- (pattern_cooccurrence_merged) and one row per flush and pattern for what is not yet
-- (pattern_cooccurrence_pending). Measured on 100,000 events of 8 patterns each (28 pairs): with
-- a row per pair, merges upserted ~18 us a pair and the flush's pending rows, as array literals,
-- cost 78 us per event to parse: co-occurrence took the drain from 11,080 events/s to 4,393. A
-- list is copied, not parsed; the engine merges lists (sums of sorted runs, src/merge.c) and
-- PostgreSQL only stores them.
--
-- Every pair is in the lists of both its patterns, so the partners of one pattern are its own
-- rows (one merged, a few pending) and each pattern's rows merge on their own. The pair
-- (pattern_id_1 < pattern_id_2) counts from pattern_id_1's rows; pt_cooc_entries reads a list in
-- SQL, and the view pattern_cooccurrence gives every pair with its count as rows (slowly: for
-- inspection and checks; the API reads lists in the engine).

-- As in 008: flushes of engines still running the previous pt_flush wait until this commits.
LOCK TABLE pattern_agent_usage, pattern_lineage_nodes IN SHARE MODE;

-- What 011's flushes left pending is merged with 011's own merge first (waiting for a merge an
-- engine may be running), so that one table of pairs is left to convert.
SELECT pg_advisory_xact_lock(7412503912);
SELECT pt_merge_cooccurrence(2147483647);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pattern_cooccurrence_pending) THEN
        RAISE EXCEPTION 'pattern_cooccurrence_pending is not empty after merging it';
    END IF;
END
$$;

-- The entries of a partner list after the first p_skip (n_low skips those below the row's
-- pattern, leaving each pair once), as rows.
CREATE OR REPLACE FUNCTION pt_cooc_entries(p_list BYTEA, p_skip INTEGER DEFAULT 0)
RETURNS TABLE (partner TEXT, cnt BIGINT, last_us BIGINT)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS
$$
DECLARE
    v_list BYTEA := p_list; -- detoasted once, not at every get_byte
    v_end  INTEGER := octet_length(p_list);
    v_pos  INTEGER := 1; -- 0-based offset of the next entry
    v_len  INTEGER;
    v_i    INTEGER := 0;
BEGIN
    IF v_end < 1 OR get_byte(v_list, 0) <> 1 THEN
        RAISE EXCEPTION 'not a partner list (version byte %)',
            CASE WHEN v_end > 0 THEN get_byte(v_list, 0) END;
    END IF;
    WHILE v_pos < v_end LOOP
        v_len := get_byte(v_list, v_pos);
        IF v_len = 0 OR v_pos + v_len + 17 > v_end THEN
            RAISE EXCEPTION 'malformed partner list at byte %', v_pos;
        END IF;
        IF v_i >= p_skip THEN
            partner := convert_from(substring(v_list FROM v_pos + 2 FOR v_len), 'UTF8');
            cnt := ('x' || encode(substring(v_list FROM v_pos + v_len + 2 FOR 8), 'hex'))
                   ::bit(64)::bigint;
            last_us := ('x' || encode(substring(v_list FROM v_pos + v_len + 10 FOR 8), 'hex'))
                       ::bit(64)::bigint;
            RETURN NEXT;
        END IF;
        v_pos := v_pos + v_len + 17;
        v_i := v_i + 1;
    END LOOP;
END
$$;

-- One entry of a partner list (what src/cooc.c writes), for the conversion below and for
-- anyone who must write lists by hand.
CREATE OR REPLACE FUNCTION pt_cooc_entry(p_partner TEXT, p_cnt BIGINT, p_last_us BIGINT)
RETURNS BYTEA
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$
    SELECT substring(int4send(octet_length(convert_to(p_partner, 'UTF8'))) FROM 4 FOR 1)
           || convert_to(p_partner, 'UTF8') || int8send(p_cnt) || int8send(p_last_us)
$$;

-- The partners of each pattern, merged. n entries, n_low of them below pattern_id. Written by
-- the engine's merges only (one at a time, advisory lock 7412503912).
CREATE TABLE IF NOT EXISTS pattern_cooccurrence_merged (
    pattern_id TEXT PRIMARY KEY,
    n          INTEGER NOT NULL CHECK (n > 0),
    n_low      INTEGER NOT NULL CHECK (n_low >= 0 AND n_low <= n),
    data       BYTEA NOT NULL CHECK (get_byte(data, 0) = 1),
    merged_at  TIMESTAMPTZ NOT NULL DEFAULT now()
) WITH (fillfactor = 90);
-- Lists are rewritten whole: compressing each rewrite costs more CPU than the disk it saves.
ALTER TABLE pattern_cooccurrence_merged ALTER COLUMN data SET STORAGE EXTERNAL;

-- 011's pairs, both sides of each, into lists.
INSERT INTO pattern_cooccurrence_merged (pattern_id, n, n_low, data)
SELECT pattern_id, count(*),
       count(*) FILTER (WHERE partner COLLATE "C" < pattern_id COLLATE "C"),
       '\x01'::bytea || string_agg(pt_cooc_entry(partner, cnt, l), ''::bytea
                                   ORDER BY partner COLLATE "C")
  FROM (SELECT pattern_id_1::text AS pattern_id, pattern_id_2::text AS partner,
               cooccurrence_count AS cnt,
               (extract(epoch FROM last_seen_together) * 1000000)::bigint AS l
          FROM pattern_cooccurrence
        UNION ALL
        SELECT pattern_id_2::text, pattern_id_1::text, cooccurrence_count,
               (extract(epoch FROM last_seen_together) * 1000000)::bigint
          FROM pattern_cooccurrence) s
 GROUP BY pattern_id;

-- The best merged pairs, kept by every merge in the same transaction (src/merge.c): more than
-- the route shows (pt_cooccurrence_top_k()), so that a pending pair outside them can be told
-- from its pending count alone not to beat the pairs shown, in most cases.
CREATE OR REPLACE FUNCTION pt_cooccurrence_top_keep() RETURNS INTEGER
LANGUAGE sql IMMUTABLE AS $$ SELECT 1000 $$;
DROP TABLE IF EXISTS pattern_cooccurrence_top;
CREATE TABLE pattern_cooccurrence_top (
    pattern_id_1       TEXT NOT NULL,
    pattern_id_2       TEXT NOT NULL,
    cooccurrence_count BIGINT NOT NULL,
    last_us            BIGINT NOT NULL,
    PRIMARY KEY (pattern_id_1, pattern_id_2)
);
INSERT INTO pattern_cooccurrence_top
SELECT pattern_id_1, pattern_id_2, cooccurrence_count,
       (extract(epoch FROM last_seen_together) * 1000000)::bigint
  FROM pattern_cooccurrence
 ORDER BY cooccurrence_count DESC, pattern_id_1 COLLATE "C", pattern_id_2 COLLATE "C"
 LIMIT pt_cooccurrence_top_keep();

DROP VIEW IF EXISTS pattern_cooccurrence_pending_pairs;
DROP FUNCTION IF EXISTS pt_merge_cooccurrence(INTEGER);
DROP FUNCTION IF EXISTS pt_rebuild_cooccurrence_top();
DROP TABLE pattern_cooccurrence;
DROP TABLE pattern_cooccurrence_pending;

-- The pairs of each flush, one row per flush and pattern (both sides of each pair), committed
-- with its offsets; merged into pattern_cooccurrence_merged by the engine.
CREATE TABLE pattern_cooccurrence_pending (
    flush_id   BIGINT NOT NULL,
    pattern_id TEXT NOT NULL,
    n          INTEGER NOT NULL CHECK (n > 0),
    n_low      INTEGER NOT NULL CHECK (n_low >= 0 AND n_low <= n),
    data       BYTEA NOT NULL CHECK (get_byte(data, 0) = 1)
);
ALTER TABLE pattern_cooccurrence_pending ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX idx_pattern_cooccurrence_pending_pattern
    ON pattern_cooccurrence_pending (pattern_id);
CREATE INDEX idx_pattern_cooccurrence_pending_flush
    ON pattern_cooccurrence_pending (flush_id);

-- Every pending pair of every flush once, as a row.
CREATE VIEW pattern_cooccurrence_pending_pairs AS
SELECT p.flush_id, p.pattern_id AS pattern_id_1, e.partner AS pattern_id_2,
       e.cnt AS cooccurrence_count, pt_ts(e.last_us) AS last_seen_together
  FROM pattern_cooccurrence_pending p, pt_cooc_entries(p.data, p.n_low) e;

-- Every pair with its exact count (merged plus pending) and last time, as 005's table had them.
CREATE VIEW pattern_cooccurrence AS
SELECT pattern_id_1, pattern_id_2, sum(cnt)::bigint AS cooccurrence_count,
       pt_ts(max(last_us)) AS last_seen_together
  FROM (SELECT m.pattern_id AS pattern_id_1, e.partner AS pattern_id_2, e.cnt, e.last_us
          FROM pattern_cooccurrence_merged m, pt_cooc_entries(m.data, m.n_low) e
        UNION ALL
        SELECT p.pattern_id, e.partner, e.cnt, e.last_us
          FROM pattern_cooccurrence_pending p, pt_cooc_entries(p.data, p.n_low) e) u
 GROUP BY pattern_id_1, pattern_id_2;

-- Recomputes pattern_cooccurrence_top from the merged lists (after editing them by hand).
CREATE OR REPLACE FUNCTION pt_rebuild_cooccurrence_top() RETURNS VOID
LANGUAGE sql AS
$$
    SELECT pg_advisory_xact_lock(7412503912);
    DELETE FROM pattern_cooccurrence_top;
    INSERT INTO pattern_cooccurrence_top (pattern_id_1, pattern_id_2, cooccurrence_count, last_us)
    SELECT m.pattern_id, e.partner, e.cnt, e.last_us
      FROM pattern_cooccurrence_merged m, pt_cooc_entries(m.data, m.n_low) e
     ORDER BY e.cnt DESC, m.pattern_id COLLATE "C", e.partner COLLATE "C"
     LIMIT pt_cooccurrence_top_keep();
$$;

-- pt_flush as in 011, except that the pending rows arrive as partner lists: c_len bytes each,
-- one after the other in c_data.
DROP FUNCTION IF EXISTS pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[], BIGINT[],
                       BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[],
                       BIGINT[], BIGINT[], TEXT[], INTEGER[], BIGINT[], TEXT[], TEXT[], BYTEA[],
                       INTEGER[], BIGINT[], BIGINT[], TEXT[], INTEGER[], INTEGER[], TEXT[],
                       TEXT[], TEXT[], BOOLEAN);

CREATE OR REPLACE FUNCTION pt_flush(
    p_group     TEXT,
    o_topic     TEXT[], o_part INTEGER[], o_expected BIGINT[], o_next BIGINT[],
    u_pattern   TEXT[], u_agent TEXT[], u_count BIGINT[], u_first BIGINT[], u_last BIGINT[],
    h_pattern   TEXT[], h_hour BIGINT[], h_count BIGINT[],
    t_topic     TEXT[], t_events BIGINT[], t_without BIGINT[], t_dead BIGINT[], t_flagged BIGINT[],
    d_topic     TEXT[], d_part INTEGER[], d_offset BIGINT[], d_reason TEXT[], d_detail TEXT[],
    d_payload   BYTEA[], d_size INTEGER[],
    t_with      BIGINT[], t_over BIGINT[],
    c_pattern   TEXT[], c_n INTEGER[], c_low INTEGER[], c_len INTEGER[], c_data BYTEA,
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

    -- The batch's pairs go in under both their patterns, merged into pattern_cooccurrence_merged
    -- later by the engine: committed with the offsets, so exactly once all the same. The engine
    -- groups them into partner lists (one per pattern), sent one after the other in c_data.
    IF coalesce(array_length(c_pattern, 1), 0) > 0 THEN
        -- one flush_id for all its rows
        v_flush := nextval('pattern_cooccurrence_flush_seq');
        INSERT INTO pattern_cooccurrence_pending (flush_id, pattern_id, n, n_low, data)
        SELECT v_flush, x.pat, x.n, x.low,
               substring(c_data FROM (x.off - x.len + 1)::int FOR x.len)
          FROM (SELECT u.pat, u.n, u.low, u.len, sum(u.len) OVER (ORDER BY u.ord) AS off
                  FROM unnest(c_pattern, c_n, c_low, c_len) WITH ORDINALITY
                       AS u(pat, n, low, len, ord)) x;
        IF (SELECT sum(len) FROM unnest(c_len) AS l(len)) <> octet_length(c_data) THEN
            RAISE EXCEPTION 'flush: partner lists of % bytes in % bytes of c_data',
                (SELECT sum(len) FROM unnest(c_len) AS l(len)), octet_length(c_data);
        END IF;
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
