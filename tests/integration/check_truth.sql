-- check_truth.sql: compares a pt-loadgen truth with what the engine stored. Run by
-- check_truth in tests/integration/lib.sh, which splits the truth file by record type and
-- passes two psql variables:
--   loadscript  a psql script of \copy commands that fill the truth_* tables below
--   prefix      the topic prefix: only usage_topic_stats / usage_dead_letters rows whose topic
--               starts with it are compared ('' = all rows)
-- Pattern tables are compared whole (tests start from a truncated database), except that a
-- catalog row nobody used (usage 0, no times, no agents) and absent from the truth is ignored.
--   dumpbin    the patterntrack binary (its dump-lists reads the lists in this snapshot)
--   dumpfile   a scratch file for what it writes
--   dumpscript a psql script that \copy's dumpfile into lent
-- Output (unaligned, tuples only): up to 10 lines per mismatching table, then one line
--   RESULT|<mismatching rows>|<patterns>|<pattern-agent pairs>|<pattern-hours>|<co-occurrence
--   pairs (0: the truth has none, not compared)>
-- Times are compared as exact microseconds: TIMESTAMPTZ 'epoch' + us * INTERVAL '1 microsecond'.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SET TIME ZONE 'UTC';
-- One snapshot for every table read: an engine still running may commit a flush or a
-- fold between two statements (pattern_cooccurrence_top read after the lists it was kept from
-- would be ahead of them).
BEGIN ISOLATION LEVEL REPEATABLE READ;

CREATE TEMP TABLE truth_p (pattern TEXT, count BIGINT, first_us BIGINT, last_us BIGINT);
CREATE TEMP TABLE truth_a (pattern TEXT, agent TEXT, count BIGINT, first_us BIGINT,
                           last_us BIGINT);
CREATE TEMP TABLE truth_h (pattern TEXT, hour BIGINT, count BIGINT);
CREATE TEMP TABLE truth_c (p1 TEXT, p2 TEXT, count BIGINT, last_us BIGINT);
CREATE TEMP TABLE truth_t (topic TEXT, events BIGINT, without BIGINT, dead BIGINT,
                           flagged BIGINT);
CREATE TEMP TABLE truth_d (topic TEXT, reason TEXT, count BIGINT);
CREATE TEMP TABLE truth_u (topic TEXT, duplicates BIGINT);

\i :loadscript
ANALYZE truth_p;
ANALYZE truth_a;
ANALYZE truth_h;
ANALYZE truth_c;

CREATE TEMP TABLE diff (seq SERIAL, tbl TEXT, n INTEGER, line TEXT);

-- Every partner list, folded and pending, decoded by `patterntrack dump-lists` (the engine's
-- reader; SQL's, pt_list_entries, takes microseconds an entry) in this transaction's snapshot:
-- the patterns' agents (kind 'agents'), the patterns' partners ('partners') and the agents'
-- patterns ('patterns'), an entry a row.
CREATE TEMP TABLE lent (kind TEXT, src TEXT, rid TEXT, owner TEXT, n INTEGER, n_low INTEGER,
                        ord BIGINT, partner TEXT, cnt BIGINT, first_us BIGINT, last_us BIGINT);
SELECT pg_export_snapshot() AS snapshot \gset
-- (\! and \copy take no psql variables: the shell reads them from the environment, and
-- :dumpscript, which check_truth writes, holds the \copy)
\setenv PT_DUMP_SNAPSHOT :snapshot
\setenv PT_DUMP_BIN :dumpbin
\setenv PT_DUMP_FILE :dumpfile
\! "$PT_DUMP_BIN" dump-lists --snapshot "$PT_DUMP_SNAPSHOT" > "$PT_DUMP_FILE"
\i :dumpscript
-- Every list row, with the n and n_low it claims (a list is never empty).
CREATE TEMP TABLE lists AS
SELECT v.* FROM pattern_lists m
  CROSS JOIN LATERAL (VALUES ('folded', m.pattern_id::text, m.pattern_id::text, 'agents',
                              m.n_agents, 0, m.agents IS NOT NULL),
                             ('folded', m.pattern_id, m.pattern_id, 'partners', m.n_partners,
                              m.n_low, m.partners IS NOT NULL))
       AS v(src, rid, owner, kind, n, n_low, has)
 WHERE v.has
UNION ALL
SELECT v.* FROM pattern_lists_pending p
  CROSS JOIN LATERAL (VALUES ('pending', p.ctid::text, p.pattern_id::text, 'agents', p.n_agents,
                              0, p.agents IS NOT NULL),
                             ('pending', p.ctid::text, p.pattern_id, 'partners', p.n_partners,
                              p.n_low, p.partners IS NOT NULL))
       AS v(src, rid, owner, kind, n, n_low, has)
 WHERE v.has
UNION ALL
SELECT 'folded', agent_name, agent_name, 'patterns', n_patterns, 0, true FROM agent_lists
UNION ALL
SELECT 'pending', ctid::text, agent_name, 'patterns', n_patterns, 0, true FROM agent_lists_pending;
ANALYZE lent;

-- The (pattern, agent) usage both ways, from the lists: the patterns' agents and the agents'
-- patterns, folded and pending summed. (The views pattern_agent_usage and agent_pattern_usage
-- give the same rows, decoded in SQL: tests/unit/test_flush.c checks them.)
CREATE TEMP TABLE usage_by_pattern AS
SELECT owner AS pattern_id, partner AS agent_name, sum(cnt)::bigint AS usage_count,
       pt_ts(min(first_us)) AS first_used_at, pt_ts(max(last_us)) AS last_used_at
  FROM lent WHERE kind = 'agents' GROUP BY 1, 2;
CREATE TEMP TABLE usage_by_agent AS
SELECT partner AS pattern_id, owner AS agent_name, sum(cnt)::bigint AS usage_count,
       pt_ts(min(first_us)) AS first_used_at, pt_ts(max(last_us)) AS last_used_at
  FROM lent WHERE kind = 'patterns' GROUP BY 1, 2;

-- pattern_lineage_nodes: count, first/last event time; the pattern's distinct agents are the
-- rows of pattern_agents (used_by_agents is not written since migration 014: NULL or empty).
CREATE TEMP TABLE db_agents AS
SELECT pattern_id, array_agg(agent_name ORDER BY agent_name) AS agents
  FROM pattern_agents GROUP BY pattern_id;
WITH t AS (
    SELECT p.pattern, p.count,
           TIMESTAMPTZ 'epoch' + p.first_us * INTERVAL '1 microsecond' AS first_at,
           TIMESTAMPTZ 'epoch' + p.last_us * INTERVAL '1 microsecond' AS last_at,
           coalesce(a.agents, ARRAY[]::TEXT[]) AS agents
      FROM truth_p p
      LEFT JOIN (SELECT pattern, array_agg(agent ORDER BY agent) AS agents
                   FROM truth_a GROUP BY pattern) a USING (pattern)
), n AS (
    SELECT n.pattern_id, n.usage_count, n.first_used_at, n.last_used_at,
           coalesce(a.agents, ARRAY[]::TEXT[]) AS agents,
           coalesce(cardinality(n.used_by_agents), 0) AS stale_agents
      FROM pattern_lineage_nodes n
      LEFT JOIN db_agents a ON a.pattern_id = n.pattern_id
     WHERE coalesce(n.usage_count, 0) <> 0 OR n.first_used_at IS NOT NULL
        OR n.last_used_at IS NOT NULL OR a.agents IS NOT NULL
        OR coalesce(cardinality(n.used_by_agents), 0) > 0
), d AS (
    SELECT coalesce(t.pattern, n.pattern_id) AS pattern, t, n
      FROM t
      FULL JOIN n ON n.pattern_id = t.pattern
     WHERE t.pattern IS NULL OR n.pattern_id IS NULL
        OR t.count IS DISTINCT FROM n.usage_count
        OR t.first_at IS DISTINCT FROM n.first_used_at
        OR t.last_at IS DISTINCT FROM n.last_used_at
        OR t.agents IS DISTINCT FROM n.agents
        OR n.stale_agents > 0
)
INSERT INTO diff (tbl, n, line)
SELECT 'pattern_lineage_nodes', count(*) OVER (),
       format('  %s: truth %s | db %s%s', quote_literal(pattern),
              CASE WHEN (t).pattern IS NULL THEN '(none)'
                   ELSE format('count=%s first=%s last=%s agents=%s', (t).count, (t).first_at,
                               (t).last_at, cardinality((t).agents)) END,
              CASE WHEN (n).pattern_id IS NULL THEN '(none)'
                   ELSE format('count=%s first=%s last=%s agents=%s used_by_agents=%s',
                               (n).usage_count, (n).first_used_at, (n).last_used_at,
                               cardinality((n).agents), (n).stale_agents) END,
              CASE WHEN (t).pattern IS NULL OR (n).pattern_id IS NULL
                     OR (t).agents IS NOT DISTINCT FROM (n).agents THEN ''
                   ELSE format(' (agents only in truth: %s; only in pattern_agents: %s)',
                               (SELECT coalesce(array_agg(a ORDER BY a), '{}') FROM
                                  (SELECT a FROM unnest((t).agents) a
                                   EXCEPT SELECT a FROM unnest((n).agents) a
                                   ORDER BY 1 LIMIT 5) x),
                               (SELECT coalesce(array_agg(a ORDER BY a), '{}') FROM
                                  (SELECT a FROM unnest((n).agents) a
                                   EXCEPT SELECT a FROM unnest((t).agents) a
                                   ORDER BY 1 LIMIT 5) x)) END)
  FROM d ORDER BY pattern LIMIT 10;

-- pattern_agent_usage: the patterns' lists of agents, folded and pending summed
WITH t AS (
    SELECT pattern, agent, count,
           TIMESTAMPTZ 'epoch' + first_us * INTERVAL '1 microsecond' AS first_at,
           TIMESTAMPTZ 'epoch' + last_us * INTERVAL '1 microsecond' AS last_at
      FROM truth_a
), d AS (
    SELECT coalesce(t.pattern, u.pattern_id) AS pattern, coalesce(t.agent, u.agent_name) AS agent,
           t, u
      FROM t
      FULL JOIN usage_by_pattern u ON u.pattern_id = t.pattern AND u.agent_name = t.agent
     WHERE t.pattern IS NULL OR u.pattern_id IS NULL
        OR t.count <> u.usage_count OR t.first_at <> u.first_used_at
        OR t.last_at <> u.last_used_at
)
INSERT INTO diff (tbl, n, line)
SELECT 'pattern_agent_usage', count(*) OVER (),
       format('  %s / %s: truth %s | db %s', quote_literal(pattern), quote_literal(agent),
              CASE WHEN (t).pattern IS NULL THEN '(none)'
                   ELSE format('count=%s first=%s last=%s', (t).count, (t).first_at,
                               (t).last_at) END,
              CASE WHEN (u).pattern_id IS NULL THEN '(none)'
                   ELSE format('count=%s first=%s last=%s', (u).usage_count, (u).first_used_at,
                               (u).last_used_at) END)
  FROM d ORDER BY pattern, agent LIMIT 10;

-- agent_pattern_usage: the same rows, from the agents' lists
WITH t AS (
    SELECT pattern, agent, count,
           TIMESTAMPTZ 'epoch' + first_us * INTERVAL '1 microsecond' AS first_at,
           TIMESTAMPTZ 'epoch' + last_us * INTERVAL '1 microsecond' AS last_at
      FROM truth_a
), d AS (
    SELECT coalesce(t.pattern, u.pattern_id) AS pattern, coalesce(t.agent, u.agent_name) AS agent,
           t, u
      FROM t
      FULL JOIN usage_by_agent u ON u.pattern_id = t.pattern AND u.agent_name = t.agent
     WHERE t.pattern IS NULL OR u.pattern_id IS NULL
        OR t.count <> u.usage_count OR t.first_at <> u.first_used_at
        OR t.last_at <> u.last_used_at
)
INSERT INTO diff (tbl, n, line)
SELECT 'agent_pattern_usage', count(*) OVER (),
       format('  %s / %s: truth %s | db %s', quote_literal(pattern), quote_literal(agent),
              CASE WHEN (t).pattern IS NULL THEN '(none)'
                   ELSE format('count=%s first=%s last=%s', (t).count, (t).first_at,
                               (t).last_at) END,
              CASE WHEN (u).pattern_id IS NULL THEN '(none)'
                   ELSE format('count=%s first=%s last=%s', (u).usage_count, (u).first_used_at,
                               (u).last_used_at) END)
  FROM d ORDER BY pattern, agent LIMIT 10;

-- pattern_usage_hourly
WITH t AS (
    SELECT pattern, TIMESTAMPTZ 'epoch' + hour * INTERVAL '1 hour' AS hour, count FROM truth_h
), d AS (
    SELECT coalesce(t.pattern, h.pattern_id) AS pattern, coalesce(t.hour, h.hour) AS hour,
           t.count AS t_count, h.usage_count AS db_count
      FROM t
      FULL JOIN pattern_usage_hourly h ON h.pattern_id = t.pattern AND h.hour = t.hour
     WHERE t.count IS DISTINCT FROM h.usage_count
)
INSERT INTO diff (tbl, n, line)
SELECT 'pattern_usage_hourly', count(*) OVER (),
       format('  %s @ %s: truth %s | db %s', quote_literal(pattern), hour,
              coalesce('count=' || t_count, '(none)'), coalesce('count=' || db_count, '(none)'))
  FROM d ORDER BY pattern, hour LIMIT 10;

-- agent_usage_totals: the truth's pairs summed per agent
WITH t AS (
    SELECT agent, sum(count) AS count, count(*) AS patterns,
           TIMESTAMPTZ 'epoch' + min(first_us) * INTERVAL '1 microsecond' AS first_at,
           TIMESTAMPTZ 'epoch' + max(last_us) * INTERVAL '1 microsecond' AS last_at
      FROM truth_a GROUP BY agent
), d AS (
    SELECT coalesce(t.agent, a.agent_name) AS agent,
           CASE WHEN t.agent IS NULL THEN '(none)'
                ELSE format('count=%s patterns=%s first=%s last=%s', t.count, t.patterns,
                            t.first_at, t.last_at) END AS tv,
           CASE WHEN a.agent_name IS NULL THEN '(none)'
                ELSE format('count=%s patterns=%s first=%s last=%s', a.usage_count,
                            a.distinct_patterns, a.first_used_at, a.last_used_at) END AS dv
      FROM t FULL JOIN agent_usage_totals a ON a.agent_name = t.agent
)
INSERT INTO diff (tbl, n, line)
SELECT 'agent_usage_totals', count(*) OVER (),
       format('  %s: truth %s | db %s', quote_literal(agent), tv, dv)
  FROM d WHERE tv <> dv ORDER BY agent LIMIT 10;

-- agent_type_usage: the truth's pairs summed per agent and the catalog's pattern_type
WITH t AS (
    SELECT a.agent, coalesce(n.pattern_type, 'unknown') AS typ, sum(a.count) AS count,
           count(*) AS patterns,
           TIMESTAMPTZ 'epoch' + min(a.first_us) * INTERVAL '1 microsecond' AS first_at,
           TIMESTAMPTZ 'epoch' + max(a.last_us) * INTERVAL '1 microsecond' AS last_at
      FROM truth_a a LEFT JOIN pattern_lineage_nodes n ON n.pattern_id = a.pattern
     GROUP BY 1, 2
), d AS (
    SELECT coalesce(t.agent, y.agent_name) AS agent, coalesce(t.typ, y.pattern_type) AS typ,
           CASE WHEN t.agent IS NULL THEN '(none)'
                ELSE format('count=%s patterns=%s first=%s last=%s', t.count, t.patterns,
                            t.first_at, t.last_at) END AS tv,
           CASE WHEN y.agent_name IS NULL THEN '(none)'
                ELSE format('count=%s patterns=%s first=%s last=%s', y.usage_count,
                            y.patterns, y.first_used_at, y.last_used_at) END AS dv
      FROM t FULL JOIN agent_type_usage y ON y.agent_name = t.agent AND y.pattern_type = t.typ
)
INSERT INTO diff (tbl, n, line)
SELECT 'agent_type_usage', count(*) OVER (),
       format('  %s / %s: truth %s | db %s', quote_literal(agent), quote_literal(typ), tv, dv)
  FROM d WHERE tv <> dv ORDER BY agent, typ LIMIT 10;

-- usage_hourly_totals: the truth's buckets summed per hour
WITH t AS (
    SELECT TIMESTAMPTZ 'epoch' + hour * INTERVAL '1 hour' AS hour, sum(count) AS count
      FROM truth_h GROUP BY hour
), d AS (
    SELECT coalesce(t.hour, h.hour) AS hour, t.count AS t_count, h.usage_count AS db_count
      FROM t FULL JOIN usage_hourly_totals h ON h.hour = t.hour
     WHERE t.count IS DISTINCT FROM h.usage_count
)
INSERT INTO diff (tbl, n, line)
SELECT 'usage_hourly_totals', count(*) OVER (),
       format('  %s: truth %s | db %s', hour, coalesce('count=' || t_count, '(none)'),
              coalesce('count=' || db_count, '(none)'))
  FROM d ORDER BY hour LIMIT 10;

-- usage_topic_stats (a missing row counts as all zeros)
WITH s AS (
    SELECT * FROM usage_topic_stats WHERE left(topic, length(:'prefix')) = :'prefix'
), d AS (
    SELECT coalesce(t.topic, s.topic) AS topic,
           format('events=%s without=%s dead=%s flagged=%s', coalesce(t.events, 0),
                  coalesce(t.without, 0), coalesce(t.dead, 0), coalesce(t.flagged, 0)) AS tv,
           format('events=%s without=%s dead=%s flagged=%s', coalesce(s.events, 0),
                  coalesce(s.events_without_patterns, 0), coalesce(s.dead_letters, 0),
                  coalesce(s.flagged_events, 0)) AS dv
      FROM truth_t t FULL JOIN s ON s.topic = t.topic
)
INSERT INTO diff (tbl, n, line)
SELECT 'usage_topic_stats', count(*) OVER (), format('  %s: truth %s | db %s', topic, tv, dv)
  FROM d WHERE tv <> dv ORDER BY topic LIMIT 10;

-- usage_topic_stats.duplicates: the truth has a U record only for a topic with copies the
-- engine must have recognised; every other topic, and a missing row, must be 0
WITH s AS (
    SELECT topic, duplicates FROM usage_topic_stats
     WHERE left(topic, length(:'prefix')) = :'prefix'
), d AS (
    SELECT coalesce(u.topic, s.topic) AS topic, coalesce(u.duplicates, 0) AS t_count,
           coalesce(s.duplicates, 0) AS db_count
      FROM truth_u u FULL JOIN s ON s.topic = u.topic
)
INSERT INTO diff (tbl, n, line)
SELECT 'usage_topic_stats duplicates', count(*) OVER (),
       format('  %s: truth duplicates=%s | db duplicates=%s', topic, t_count, db_count)
  FROM d WHERE t_count <> db_count ORDER BY topic LIMIT 10;

-- Each row's list: n entries (none when its list is NULL), partners strictly increasing in byte
-- order (pt_list_entries raises otherwise), counts above 0, first <= last; a pattern's partners
-- not itself, n_low of them below it.
WITH r AS (
    SELECT l.src, l.rid, l.owner, l.kind, l.n, l.n_low, count(e.partner) AS entries,
           count(*) FILTER (WHERE e.partner COLLATE "C" < l.owner COLLATE "C") AS below,
           count(*) FILTER (WHERE (l.kind = 'partners' AND e.partner = l.owner) OR e.cnt < 1
                                  OR e.first_us > e.last_us) AS bad
      FROM lists l LEFT JOIN lent e ON e.src = l.src AND e.rid = l.rid AND e.kind = l.kind
     GROUP BY l.src, l.rid, l.owner, l.kind, l.n, l.n_low
)
INSERT INTO diff (tbl, n, line)
SELECT 'partner lists', count(*) OVER (),
       format('  %s %s list of %s: n=%s n_low=%s, list has %s entries, %s below, %s bad',
              src, kind, quote_literal(owner), n, n_low, entries, below, bad)
  FROM r WHERE entries <> n OR (kind = 'partners' AND below <> n_low) OR bad > 0
 ORDER BY src, kind, owner COLLATE "C" LIMIT 10;

-- pattern_agents: exactly the truth's (pattern, agent) keys.
WITH d AS (
    SELECT coalesce(t.pattern, m.pattern_id) AS pattern, coalesce(t.agent, m.agent_name) AS agent,
           t.pattern IS NOT NULL AS in_truth
      FROM truth_a t FULL JOIN pattern_agents m ON m.pattern_id = t.pattern AND m.agent_name = t.agent
     WHERE t.pattern IS NULL OR m.pattern_id IS NULL
)
INSERT INTO diff (tbl, n, line)
SELECT 'pattern_agents', count(*) OVER (),
       format('  %s / %s: %s', quote_literal(pattern), quote_literal(agent),
              CASE WHEN in_truth THEN 'in the truth, not in pattern_agents'
                   ELSE 'in pattern_agents, not in the truth' END)
  FROM d ORDER BY pattern, agent LIMIT 10;

-- The co-occurrence entries.
CREATE TEMP TABLE ent AS
SELECT src, rid, owner AS pat, n, n_low, partner, cnt, last_us, ord FROM lent WHERE kind = 'partners';

-- Every pair under both its patterns: each side's rows sum to the pair's count and last time.
-- Only for a truth with pairs (pt-loadgen --pairs-truth).
SELECT EXISTS (SELECT 1 FROM truth_c) AS have_pairs \gset
\if :have_pairs
WITH db AS (
    SELECT pat, partner, sum(cnt) AS count, max(last_us) AS last_us FROM ent GROUP BY 1, 2
), t AS (
    SELECT p1 AS pat, p2 AS partner, count, last_us FROM truth_c
    UNION ALL
    SELECT p2, p1, count, last_us FROM truth_c
), d AS (
    SELECT coalesce(t.pat, db.pat) AS pat, coalesce(t.partner, db.partner) AS partner, t, db
      FROM t FULL JOIN db ON db.pat = t.pat AND db.partner = t.partner
     WHERE t.pat IS NULL OR db.pat IS NULL OR t.count IS DISTINCT FROM db.count
        OR t.last_us IS DISTINCT FROM db.last_us
)
INSERT INTO diff (tbl, n, line)
SELECT 'pattern_cooccurrence', count(*) OVER (),
       format('  %s with %s: truth %s | db %s', quote_literal(pat), quote_literal(partner),
              CASE WHEN (t).pat IS NULL THEN '(none)'
                   ELSE format('count=%s last=%s', (t).count, pt_ts((t).last_us)) END,
              CASE WHEN (db).pat IS NULL THEN '(none)'
                   ELSE format('count=%s last=%s', (db).count, pt_ts((db).last_us)) END)
  FROM d ORDER BY pat COLLATE "C", partner COLLATE "C" LIMIT 10;
\endif

-- pattern_cooccurrence_top: exactly the pt_cooccurrence_top_keep() best folded pairs (from
-- their first pattern's folded row), in order, with their counts and last times
WITH m AS (
    SELECT pat AS p1, partner AS p2, cnt, last_us FROM ent
     WHERE src = 'folded' AND partner COLLATE "C" > pat COLLATE "C"
), r AS (
    SELECT top, row_number() OVER (PARTITION BY top
                                   ORDER BY cnt DESC, p1 COLLATE "C", p2 COLLATE "C") AS rn,
           format('%s / %s count=%s last=%s', quote_literal(p1), quote_literal(p2), cnt,
                  last_us) AS v
      FROM (SELECT false AS top, * FROM m
            UNION ALL
            SELECT true, pattern_id_1, pattern_id_2, cooccurrence_count, last_us
              FROM pattern_cooccurrence_top) u
), d AS (
    SELECT coalesce(t.rn, db.rn) AS rn, coalesce(t.v, '(none)') AS tv,
           coalesce(db.v, '(none)') AS dv
      FROM (SELECT * FROM r WHERE NOT top AND rn <= pt_cooccurrence_top_keep()) t
      FULL JOIN (SELECT * FROM r WHERE top) db ON db.rn = t.rn
)
INSERT INTO diff (tbl, n, line)
SELECT 'pattern_cooccurrence_top', count(*) OVER (),
       format('  #%s: merged %s | top %s', rn, tv, dv)
  FROM d WHERE tv <> dv ORDER BY rn LIMIT 10;

-- usage_dead_letters: rows per (topic, reason)
WITH s AS (
    SELECT topic, reason, count(*) AS count FROM usage_dead_letters
     WHERE left(topic, length(:'prefix')) = :'prefix' GROUP BY topic, reason
), d AS (
    SELECT coalesce(t.topic, s.topic) AS topic, coalesce(t.reason, s.reason) AS reason,
           coalesce(t.count, 0) AS t_count, coalesce(s.count, 0) AS db_count
      FROM truth_d t FULL JOIN s ON s.topic = t.topic AND s.reason = t.reason
)
INSERT INTO diff (tbl, n, line)
SELECT 'usage_dead_letters', count(*) OVER (),
       format('  %s / %s: truth count=%s | db count=%s', topic, quote_literal(reason), t_count,
              db_count)
  FROM d WHERE t_count <> db_count ORDER BY topic, reason LIMIT 10;

SELECT line FROM (
    SELECT tbl, 0 AS seq, format('truth: %s: %s mismatching row%s%s', tbl, n,
                                 CASE WHEN n = 1 THEN '' ELSE 's' END,
                                 CASE WHEN n > 10 THEN ' (first 10)' ELSE '' END) AS line
      FROM (SELECT DISTINCT tbl, n FROM diff) x
    UNION ALL
    SELECT tbl, seq, CASE WHEN length(line) > 400 THEN left(line, 397) || '...' ELSE line END
      FROM diff
) y ORDER BY tbl, seq;

SELECT 'RESULT', coalesce((SELECT sum(n) FROM (SELECT DISTINCT tbl, n FROM diff) x), 0),
       (SELECT count(*) FROM truth_p), (SELECT count(*) FROM truth_a),
       (SELECT count(*) FROM truth_h), (SELECT count(*) FROM truth_c);
COMMIT;
