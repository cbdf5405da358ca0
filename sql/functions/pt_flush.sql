-- One flush: a batch of counted events and the Kafka offsets they advance, in one transaction
-- (src/flush.c builds the parameters). What it writes, and why that way, is in BENCHMARKS.md
-- ("Write path v2"):
--   * the offsets, by compare-and-set: another consumer that advanced a partition makes the
--     whole flush fail with PT409 (nothing written; the engine re-reads its offsets);
--   * rows whose keys a batch bounds by the catalog, the hours and the agents rather than by its
--     events, updated in place: each pattern's usage_count and first/last use (a pattern nobody
--     registered is created with registered = false), each (pattern, hour), each agent's and
--     (agent, pattern_type)'s totals, each hour's total, each topic's counters;
--   * the (pattern, agent) keys the engine has not seen committed (k_*), inserted into
--     pattern_agents: those that were not there are the batch's new keys, which is what makes
--     agent_usage_totals.distinct_patterns and agent_type_usage.patterns exact;
--   * the batch's partner lists (src/cooc.h), appended as pending rows for the fold
--     (src/fold.c) to merge: per pattern its agents (version 3) and its co-occurring patterns
--     (version 2), per agent its patterns (version 3). They arrive in one bytea (x_data), cut
--     by their lengths: per pattern l_agents_len then l_partners_len bytes, then per agent
--     m_len bytes. A length 0 is no list. l_partners_max: the largest count in each
--     co-occurrence list (0 for none), which bounds what /cooccurrence/top must read.
-- t_dups: copies of events counted before, which event-ID deduplication did not count again
-- (their claims were decided by pt_claim_events before this batch was built).
-- p_type is the pattern_type the engine took for each pattern ('unknown' for none) to add its
-- agents' uses to agent_type_usage (y_*); when the catalog says otherwise (a registration changed
-- it), the flush fails with PT410 and the engine looks the types up again.
-- p_durable: a batch holding HTTP-ingested events (answered "stored" after this commit) waits for
-- the WAL flush; a Kafka batch need not: a commit lost in a crash loses its offsets too, and its
-- events are consumed again.
CREATE OR REPLACE FUNCTION pt_flush(
    p_group   TEXT,
    o_topic   TEXT[], o_part INTEGER[], o_expected BIGINT[], o_next BIGINT[],
    p_id      TEXT[], p_type TEXT[], p_count BIGINT[], p_first BIGINT[], p_last BIGINT[],
    h_pattern TEXT[], h_hour BIGINT[], h_count BIGINT[],
    a_agent   TEXT[], a_count BIGINT[], a_first BIGINT[], a_last BIGINT[],
    y_agent   TEXT[], y_type TEXT[], y_count BIGINT[], y_first BIGINT[], y_last BIGINT[],
    k_pattern TEXT[], k_agent TEXT[],
    t_topic   TEXT[], t_events BIGINT[], t_without BIGINT[], t_dead BIGINT[],
    t_flagged BIGINT[], t_with BIGINT[], t_over BIGINT[], t_dups BIGINT[],
    d_topic   TEXT[], d_part INTEGER[], d_offset BIGINT[], d_reason TEXT[], d_detail TEXT[],
    d_payload BYTEA[], d_size INTEGER[], d_hash UUID[],
    l_pattern TEXT[], l_n_agents INTEGER[], l_agents_len INTEGER[], l_n_partners INTEGER[],
    l_n_low   INTEGER[], l_partners_len INTEGER[], l_partners_max BIGINT[],
    m_agent   TEXT[], m_n INTEGER[], m_len INTEGER[],
    x_data    BYTEA,
    p_durable BOOLEAN
) RETURNS INTEGER
LANGUAGE plpgsql
SET work_mem = '64MB' SET jit = off SET max_parallel_workers_per_gather = 0
-- The planner cannot see how many rows the unnest()s hold; every statement here touches few rows
-- of large tables by key.
SET enable_seqscan = off
AS
$$
DECLARE
    v_flush  BIGINT;
    n_want   INTEGER := coalesce(array_length(o_topic, 1), 0);
    n_upd    INTEGER := 0;
    n_ins    INTEGER := 0;
    v_moved  TEXT;
    v_pbytes BIGINT;  -- bytes of the patterns' lists in x_data (the agents' follow them)
    v_need   BIGINT;
    n_agent  TEXT[];  -- new (pattern, agent) keys per agent ...
    n_count  BIGINT[];
    n_yagent TEXT[];  -- ... and per (agent, pattern_type)
    n_ytype  TEXT[];
    n_ycount BIGINT[];
BEGIN
    -- pt_register_patterns moves agent_type_usage rows when a used pattern changes type; it takes
    -- SHARE ROW EXCLUSIVE first, so it waits for running flushes and holds new ones here.
    LOCK TABLE agent_type_usage IN ROW EXCLUSIVE MODE;
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

    IF coalesce(array_length(p_id, 1), 0) > 0 THEN
        -- Most patterns exist: update them in place, then insert the new ones (ON CONFLICT: one
        -- another engine inserted meanwhile). Every row comes back with its type.
        WITH d AS (SELECT * FROM unnest(p_id, p_type, p_count, p_first, p_last)
                                 AS x(id, typ, cnt, f, l)),
             upd AS (UPDATE pattern_lineage_nodes n
                        SET usage_count   = coalesce(n.usage_count, 0) + d.cnt,
                            first_used_at = LEAST(n.first_used_at, pt_ts(d.f)),
                            last_used_at  = GREATEST(n.last_used_at, pt_ts(d.l))
                       FROM d
                      WHERE n.pattern_id = d.id
                        -- the batch's patterns found by the index one by one: else the planner
                        -- merges d with a scan of the whole index (about 100 ms more for 12,000
                        -- of 100,000 patterns, BENCHMARKS.md)
                        AND n.pattern_id = ANY (p_id::varchar[])
                  RETURNING n.pattern_id, coalesce(n.pattern_type, 'unknown') AS typ),
             ins AS (INSERT INTO pattern_lineage_nodes AS n
                            (pattern_id, usage_count, first_used_at, last_used_at, registered)
                     SELECT d.id, d.cnt, pt_ts(d.f), pt_ts(d.l), false
                       FROM d
                      WHERE NOT EXISTS (SELECT 1 FROM upd WHERE upd.pattern_id = d.id)
                      ORDER BY d.id
                     ON CONFLICT (pattern_id) DO UPDATE SET
                         usage_count   = coalesce(n.usage_count, 0) + EXCLUDED.usage_count,
                         first_used_at = LEAST(n.first_used_at, EXCLUDED.first_used_at),
                         last_used_at  = GREATEST(n.last_used_at, EXCLUDED.last_used_at)
                     RETURNING n.pattern_id, coalesce(n.pattern_type, 'unknown') AS typ)
        SELECT string_agg(format('%s (%s, not %s)', r.pattern_id, r.typ, d.typ), ', ')
          INTO v_moved
          FROM (SELECT * FROM upd UNION ALL SELECT * FROM ins) r
          JOIN d ON d.id = r.pattern_id
         WHERE r.typ IS DISTINCT FROM d.typ;
        IF v_moved IS NOT NULL THEN
            RAISE EXCEPTION 'pattern types changed since the engine read them: %',
                left(v_moved, 1000) USING ERRCODE = 'PT410';
        END IF;
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

    -- The keys that were not in pattern_agents are the batch's new ones (a key another engine
    -- inserts meanwhile waits for its commit and then counts as its, not ours).
    IF coalesce(array_length(k_pattern, 1), 0) > 0 THEN
        WITH ins AS (INSERT INTO pattern_agents (pattern_id, agent_name)
                     SELECT p, a FROM unnest(k_pattern, k_agent) AS x(p, a) ORDER BY p, a
                     ON CONFLICT DO NOTHING
                     RETURNING pattern_id, agent_name),
             typed AS (SELECT ins.agent_name, t.typ
                         FROM ins JOIN unnest(p_id, p_type) AS t(id, typ) ON t.id = ins.pattern_id)
        SELECT g.agents, g.counts, y.agents, y.types, y.counts
          INTO n_agent, n_count, n_yagent, n_ytype, n_ycount
          FROM (SELECT array_agg(agent_name) AS agents, array_agg(n) AS counts
                  FROM (SELECT agent_name, count(*) AS n FROM typed GROUP BY 1) x) g,
               (SELECT array_agg(agent_name) AS agents, array_agg(typ) AS types,
                       array_agg(n) AS counts
                  FROM (SELECT agent_name, typ, count(*) AS n FROM typed GROUP BY 1, 2) x) y;
    END IF;

    -- The batch's lists, pending until the fold merges them: committed with the offsets, so
    -- exactly once like everything else here.
    IF coalesce(array_length(l_pattern, 1), 0) > 0 OR coalesce(array_length(m_agent, 1), 0) > 0
    THEN
        v_flush := nextval('pt_flush_seq');
        v_pbytes := coalesce((SELECT sum(a) + sum(b)
                                FROM unnest(l_agents_len, l_partners_len) AS x(a, b)), 0);
        v_need := v_pbytes + coalesce((SELECT sum(m) FROM unnest(m_len) AS x(m)), 0);
        IF v_need <> coalesce(octet_length(x_data), 0) THEN
            RAISE EXCEPTION 'flush: lists of % bytes in % bytes of x_data', v_need,
                coalesce(octet_length(x_data), 0);
        END IF;
        -- x.off: where the pattern's agents list starts (1-based), its partners follow
        INSERT INTO pattern_lists_pending
               (flush_id, pattern_id, n_agents, agents, n_partners, n_low, partners,
                partners_max)
        SELECT v_flush, x.pat, x.na,
               CASE WHEN x.al > 0 THEN substring(x_data FROM x.off::int FOR x.al) END,
               x.np, x.low,
               CASE WHEN x.pl > 0 THEN substring(x_data FROM (x.off + x.al)::int FOR x.pl) END,
               nullif(x.pmax, 0)
          FROM (SELECT u.*, 1 + coalesce(sum(u.al + u.pl) OVER (ORDER BY u.ord ROWS BETWEEN
                                         UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS off
                  FROM unnest(l_pattern, l_n_agents, l_agents_len, l_n_partners, l_n_low,
                              l_partners_len, l_partners_max) WITH ORDINALITY
                       AS u(pat, na, al, np, low, pl, pmax, ord)) x;
        INSERT INTO agent_lists_pending (flush_id, agent_name, n_patterns, patterns)
        SELECT v_flush, x.agent, x.n, substring(x_data FROM x.off::int FOR x.len)
          FROM (SELECT u.*, 1 + v_pbytes
                            + coalesce(sum(u.len) OVER (ORDER BY u.ord ROWS BETWEEN UNBOUNDED
                                                        PRECEDING AND 1 PRECEDING), 0) AS off
                  FROM unnest(m_agent, m_n, m_len) WITH ORDINALITY AS u(agent, n, len, ord)) x;
    END IF;

    IF coalesce(array_length(d_topic, 1), 0) > 0 THEN
        -- truncated: part of the payload (or all of it, when none is kept) is not in the row
        INSERT INTO usage_dead_letters
               (topic, partition, kafka_offset, reason, detail, payload, payload_size, truncated,
                payload_hash)
        SELECT topic, part, off, reason, detail, payload, size,
               size > coalesce(octet_length(payload), 0), hash
          FROM unnest(d_topic, d_part, d_offset, d_reason, d_detail, d_payload, d_size, d_hash)
               AS x(topic, part, off, reason, detail, payload, size, hash);
    END IF;

    -- Rows every flush of every engine touches (the busy agents, the current hour, the topics)
    -- come last, each table in key order: their row locks are held only until the commit, and
    -- concurrent flushes take them in the same order.
    IF coalesce(array_length(a_agent, 1), 0) > 0 THEN
        INSERT INTO agent_usage_totals AS a
               (agent_name, usage_count, distinct_patterns, first_used_at, last_used_at)
        SELECT x.agent, x.cnt, coalesce(nn.n, 0), pt_ts(x.f), pt_ts(x.l)
          FROM unnest(a_agent, a_count, a_first, a_last) AS x(agent, cnt, f, l)
          LEFT JOIN unnest(n_agent, n_count) AS nn(agent, n) ON nn.agent = x.agent
         ORDER BY x.agent
        ON CONFLICT (agent_name) DO UPDATE SET
            usage_count       = a.usage_count + EXCLUDED.usage_count,
            distinct_patterns = a.distinct_patterns + EXCLUDED.distinct_patterns,
            first_used_at     = LEAST(a.first_used_at, EXCLUDED.first_used_at),
            last_used_at      = GREATEST(a.last_used_at, EXCLUDED.last_used_at);
    END IF;
    IF coalesce(array_length(y_agent, 1), 0) > 0 THEN
        INSERT INTO agent_type_usage AS t
               (agent_name, pattern_type, usage_count, patterns, first_used_at, last_used_at)
        SELECT x.agent, x.typ, x.cnt, coalesce(nn.n, 0), pt_ts(x.f), pt_ts(x.l)
          FROM unnest(y_agent, y_type, y_count, y_first, y_last) AS x(agent, typ, cnt, f, l)
          LEFT JOIN unnest(n_yagent, n_ytype, n_ycount) AS nn(agent, typ, n)
            ON nn.agent = x.agent AND nn.typ = x.typ
         ORDER BY x.agent, x.typ
        ON CONFLICT (agent_name, pattern_type) DO UPDATE SET
            usage_count   = t.usage_count + EXCLUDED.usage_count,
            patterns      = t.patterns + EXCLUDED.patterns,
            first_used_at = LEAST(t.first_used_at, EXCLUDED.first_used_at),
            last_used_at  = GREATEST(t.last_used_at, EXCLUDED.last_used_at);
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
                events_with_patterns, events_over_cooccurrence_limit, duplicates)
        SELECT * FROM unnest(t_topic, t_events, t_without, t_dead, t_flagged, t_with, t_over,
                             t_dups)
         ORDER BY 1
        ON CONFLICT (topic) DO UPDATE SET
            events                  = s.events + EXCLUDED.events,
            events_without_patterns = s.events_without_patterns + EXCLUDED.events_without_patterns,
            dead_letters            = s.dead_letters + EXCLUDED.dead_letters,
            flagged_events          = s.flagged_events + EXCLUDED.flagged_events,
            events_with_patterns    = s.events_with_patterns + EXCLUDED.events_with_patterns,
            events_over_cooccurrence_limit =
                s.events_over_cooccurrence_limit + EXCLUDED.events_over_cooccurrence_limit,
            duplicates              = s.duplicates + EXCLUDED.duplicates,
            updated_at              = now();
    END IF;

    RETURN n_want;
END
$$;
