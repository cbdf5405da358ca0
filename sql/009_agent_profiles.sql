-- 009: agent profiles kept by the flush (the seed's agent_pattern_preferences): per agent and
-- pattern_type the uses, distinct patterns, first and last use; and per agent its most used
-- patterns. /api/agents/{agent_name}/profile read an agent's every (pattern, agent) row and
-- the catalog row of each (thousands of random reads, 0.1-1.5 s for a busy agent); now it reads
-- a few rows.

-- As in 008: flushes of engines still running the previous pt_flush wait until this commits.
LOCK TABLE pattern_agent_usage, pattern_lineage_nodes IN SHARE MODE;

-- Per agent and pattern_type (the catalog's, 'unknown' for a pattern without one): the sums
-- over pattern_agent_usage. A change of a pattern's type in the catalog moves its agents' rows
-- (pt_register_patterns).
CREATE TABLE IF NOT EXISTS agent_type_usage (
    agent_name    TEXT NOT NULL,
    pattern_type  TEXT NOT NULL,
    usage_count   BIGINT NOT NULL CHECK (usage_count >= 0),
    patterns      BIGINT NOT NULL CHECK (patterns >= 0),
    first_used_at TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agent_name, pattern_type)
) WITH (fillfactor = 70);

-- Per agent, its pt_agent_top_k() most used patterns (usage_count descending, then pattern_id
-- in byte order), with their exact counts. Counts only grow, so a pattern outside an agent's
-- top k can only enter it by being used, which the flush sees: it offers the flush's new counts
-- that beat the agent's floor (the k-th entry, in agent_usage_totals), keeps the k best and
-- moves the floor. A floor lower than the true k-th only lets more candidates in (and out).
CREATE TABLE IF NOT EXISTS agent_top_patterns (
    agent_name  TEXT NOT NULL,
    pattern_id  VARCHAR(255) NOT NULL,
    usage_count BIGINT NOT NULL CHECK (usage_count >= 0),
    PRIMARY KEY (agent_name, pattern_id)
) WITH (fillfactor = 70);
ALTER TABLE agent_usage_totals
    ADD COLUMN IF NOT EXISTS top_floor_count BIGINT,
    ADD COLUMN IF NOT EXISTS top_floor_pattern TEXT;

-- The profile's top patterns answer at most this many (its limit's maximum).
CREATE OR REPLACE FUNCTION pt_agent_top_k() RETURNS INTEGER
LANGUAGE sql IMMUTABLE AS 'SELECT 100';

-- Whether an agent's count for a pattern enters its top past the floor (fc, fp): the order is
-- usage_count descending, then pattern_id in byte order; no floor (fewer than k entries) lets
-- every count in. Inlined by the planner (one IMMUTABLE expression).
CREATE OR REPLACE FUNCTION pt_beats_floor(cnt BIGINT, pattern TEXT, fc BIGINT, fp TEXT)
RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS
$$ SELECT fc IS NULL OR cnt > fc OR (cnt = fc AND pattern COLLATE "C" < fp COLLATE "C") $$;

-- Recomputes agent_type_usage for the given agents (all when NULL) from pattern_agent_usage and
-- the catalog.
CREATE OR REPLACE FUNCTION pt_rebuild_agent_types(p_agents TEXT[]) RETURNS VOID
LANGUAGE sql AS
$$
    DELETE FROM agent_type_usage WHERE p_agents IS NULL OR agent_name = ANY (p_agents);
    INSERT INTO agent_type_usage
    SELECT a.agent_name, coalesce(n.pattern_type, 'unknown'), sum(a.usage_count), count(*),
           min(a.first_used_at), max(a.last_used_at)
      FROM pattern_agent_usage a
      LEFT JOIN pattern_lineage_nodes n ON n.pattern_id = a.pattern_id
     WHERE p_agents IS NULL OR a.agent_name = ANY (p_agents)
     GROUP BY 1, 2
     ORDER BY 1, 2;
$$;

-- Recomputes every table 008 and this file keep, from the per-pattern tables.
CREATE OR REPLACE FUNCTION pt_rebuild_totals() RETURNS VOID
LANGUAGE sql AS
$$
    DELETE FROM agent_usage_totals;
    INSERT INTO agent_usage_totals
           (agent_name, usage_count, distinct_patterns, first_used_at, last_used_at)
    SELECT agent_name, sum(usage_count), count(*), min(first_used_at), max(last_used_at)
      FROM pattern_agent_usage GROUP BY agent_name;
    DELETE FROM usage_hourly_totals;
    INSERT INTO usage_hourly_totals
    SELECT hour, sum(usage_count) FROM pattern_usage_hourly GROUP BY hour;
    DELETE FROM usage_daily_totals;
    INSERT INTO usage_daily_totals
    SELECT day, sum(usage_count) FROM pattern_usage_daily GROUP BY day;
    SELECT pt_rebuild_agent_types(NULL);
    DELETE FROM agent_top_patterns;
    WITH r AS (SELECT agent_name, pattern_id, usage_count,
                      row_number() OVER (PARTITION BY agent_name
                                         ORDER BY usage_count DESC, pattern_id COLLATE "C") AS rn
                 FROM pattern_agent_usage),
         ins AS (INSERT INTO agent_top_patterns (agent_name, pattern_id, usage_count)
                 SELECT agent_name, pattern_id, usage_count FROM r WHERE rn <= pt_agent_top_k())
    UPDATE agent_usage_totals a
       SET top_floor_count = r.usage_count, top_floor_pattern = r.pattern_id
      FROM r
     WHERE r.agent_name = a.agent_name AND r.rn = pt_agent_top_k();
$$;
SELECT pt_rebuild_totals();

-- Catalog registration (PUT /api/patterns/{id}, POST /api/patterns), as one set-based upsert.
-- A pattern given without created_at keeps its own (a new one gets now(): EXCLUDED cannot say
-- whether a value was given, so now(), the transaction's start, marks "not given"); a status
-- not given is the current one. When a request changes a used pattern's type, its agents'
-- agent_type_usage rows are recomputed. That must not interleave with a flush adding to the
-- old type's rows: flushes hold ROW EXCLUSIVE on agent_type_usage from their start, and a
-- registration that may change a type takes SHARE ROW EXCLUSIVE first (waits for running
-- flushes, holds new ones at their start, and nothing else yet, so no deadlock).
CREATE OR REPLACE FUNCTION pt_register_patterns(
    p_id TEXT[], p_name TEXT[], p_type TEXT[], p_created TIMESTAMPTZ[], p_status TEXT[])
RETURNS TABLE (inserted BOOLEAN)
LANGUAGE plpgsql AS
$$
DECLARE
    moved TEXT[];
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_type) AS t WHERE t IS NOT NULL) THEN
        LOCK TABLE agent_type_usage IN SHARE ROW EXCLUSIVE MODE;
        SELECT array_agg(n.pattern_id) INTO moved
          FROM unnest(p_id, p_type) AS x(id, typ)
          JOIN pattern_lineage_nodes n ON n.pattern_id = x.id
         WHERE x.typ IS NOT NULL AND x.typ IS DISTINCT FROM n.pattern_type
           AND EXISTS (SELECT 1 FROM pattern_agent_usage a WHERE a.pattern_id = n.pattern_id);
    END IF;
    RETURN QUERY
    INSERT INTO pattern_lineage_nodes AS n
           (pattern_id, pattern_name, pattern_type, created_at, registered, status)
    SELECT x.id, x.name, x.typ, coalesce(x.created, now()), true,
           coalesce(x.st, cur.status, 'active')
      FROM unnest(p_id, p_name, p_type, p_created, p_status) AS x(id, name, typ, created, st)
      LEFT JOIN pattern_lineage_nodes cur ON cur.pattern_id = x.id
    ON CONFLICT (pattern_id) DO UPDATE SET
        pattern_name = coalesce(EXCLUDED.pattern_name, n.pattern_name),
        pattern_type = coalesce(EXCLUDED.pattern_type, n.pattern_type),
        created_at   = CASE WHEN EXCLUDED.created_at = now() THEN n.created_at
                            ELSE EXCLUDED.created_at END,
        status       = EXCLUDED.status,
        registered   = true
    RETURNING (n.xmax = 0);
    IF moved IS NOT NULL THEN
        PERFORM pt_rebuild_agent_types(ARRAY(SELECT DISTINCT agent_name
                                               FROM pattern_agent_usage
                                              WHERE pattern_id = ANY (moved)));
    END IF;
END
$$;

-- pt_flush as in 008, except that it also keeps agent_type_usage and agent_top_patterns, holds
-- ROW EXCLUSIVE on agent_type_usage from its start (see pt_register_patterns), and reads the
-- large tables by index only.
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
-- The planner cannot see how many rows the unnest()s hold and joined a flush's 50,000 keys to
-- all 2.5 M (pattern, agent) rows by a sequential scan and a hash (4.0 s); by index it takes
-- 1.5 s. Every statement here touches few rows of large tables by key.
SET enable_seqscan = off
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
