#!/usr/bin/env bash
# What PostgreSQL spends per row, per key and per byte for each way the write path could store
# its counts, measured on copies of real tables. Not a test: it prints figures.
#
#   bench/write_candidates.sh [SOURCE_DB] [RUNS]
#     SOURCE_DB  a database the engine filled (default pt_bench, which
#                `PT_BENCH_KEEP=1 bench/ingest.sh 1000000 1 backlog` leaves behind)
#     RUNS       repetitions of each statement; the median is printed (default 3)
#
# Each candidate runs in a scratch database (pt_cand) on fresh copies of the source's tables,
# one statement at a time under \timing, with synchronous_commit off (a flush of Kafka events
# commits that way; its WAL flush is not CPU). Times are milliseconds of the statement; the
# per-unit figure divides by the rows, keys or bytes the statement wrote.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
SRC=${1:-pt_bench}
RUNS=${2:-3}
base=${DATABASE_URL%/*}
DB="$base/pt_cand"

q() { psql "$DB" -XqAt -v ON_ERROR_STOP=1 "$@"; }

psql "$base/$SRC" -XqAt -c "SELECT 1" >/dev/null
psql "$DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS pt_cand WITH (FORCE)" \
    -c "CREATE DATABASE pt_cand" >/dev/null
pg_dump -d "$base/$SRC" -t pattern_lineage_nodes -t pattern_agent_usage \
    -t pattern_usage_hourly -t pattern_cooccurrence_merged --no-owner | q >/dev/null
q <<'SQL'
ANALYZE;
-- The (pattern, agent) keys and the hours, in the order a flush sends them, with dictionary ids
-- for the integer candidates.
CREATE TABLE src_pa AS
SELECT pattern_id, agent_name, usage_count, first_used_at, last_used_at
  FROM pattern_agent_usage ORDER BY pattern_id, agent_name;
CREATE TABLE dict_p AS SELECT row_number() OVER (ORDER BY pattern_id)::int AS id, pattern_id
  FROM (SELECT DISTINCT pattern_id FROM src_pa) x;
CREATE TABLE dict_a AS SELECT row_number() OVER (ORDER BY agent_name)::int AS id, agent_name
  FROM (SELECT DISTINCT agent_name FROM src_pa) x;
CREATE TABLE src_pa_int AS
SELECT p.id AS p, a.id AS a FROM src_pa s JOIN dict_p p USING (pattern_id)
  JOIN dict_a a USING (agent_name) ORDER BY 1, 2;
CREATE TABLE src_h AS SELECT pattern_id, hour, usage_count FROM pattern_usage_hourly
  ORDER BY pattern_id, hour;
CREATE TABLE src_h_int AS SELECT p.id AS p, (extract(epoch FROM hour) / 3600)::int AS hr,
       usage_count FROM src_h JOIN dict_p p USING (pattern_id) ORDER BY 1, 2;
-- Lists as the engine merges them: one per pattern, of about the bytes its partners take.
CREATE TABLE src_lists AS SELECT pattern_id, data FROM pattern_cooccurrence_merged;
ANALYZE;
SQL
n_pa=$(q -c "SELECT count(*) FROM src_pa")
n_p=$(q -c "SELECT count(*) FROM pattern_lineage_nodes")
n_h=$(q -c "SELECT count(*) FROM src_h")
n_l=$(q -c "SELECT count(*) FROM src_lists")
b_l=$(q -c "SELECT sum(octet_length(data)) FROM src_lists")
echo "source $SRC: $n_pa (pattern, agent) rows, $n_p patterns, $n_h hourly rows, $n_l partner lists of $b_l bytes"

. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
# report NAME MS UNITS UNIT
report() {
    awk -v n="$1" -v ms="$2" -v u="$3" -v unit="$4" \
        'BEGIN { printf "%-64s %10.1f ms %9.3f us/%s\n", n, ms, ms * 1000 / u, unit }'
}

PA_TABLE="DROP TABLE IF EXISTS t; CREATE TABLE t (LIKE pattern_agent_usage INCLUDING ALL) WITH (fillfactor = 70)"
MEM_TEXT="DROP TABLE IF EXISTS t; CREATE TABLE t (pattern_id text, agent_name text, PRIMARY KEY (pattern_id, agent_name))"
MEM_INT="DROP TABLE IF EXISTS t; CREATE TABLE t (p int4, a int4, PRIMARY KEY (p, a))"
APPEND="DROP TABLE IF EXISTS t; CREATE TABLE t (LIKE pattern_agent_usage)"

ms=$(time_ms "$APPEND" "INSERT INTO t SELECT * FROM src_pa")
report "(pattern, agent) rows appended, no index" "$ms" "$n_pa" row
ms=$(time_ms "$PA_TABLE" "INSERT INTO t SELECT * FROM src_pa")
report "(pattern, agent) rows inserted, all new (text PK + agent index)" "$ms" "$n_pa" row
ms=$(time_ms "$PA_TABLE; INSERT INTO t SELECT * FROM src_pa; VACUUM ANALYZE t" \
    "UPDATE t SET usage_count = t.usage_count + s.usage_count, first_used_at = LEAST(t.first_used_at, s.first_used_at), last_used_at = GREATEST(t.last_used_at, s.last_used_at) FROM src_pa s WHERE t.pattern_id = s.pattern_id AND t.agent_name = s.agent_name")
report "(pattern, agent) rows updated, all existing (HOT)" "$ms" "$n_pa" row
ms=$(time_ms "$MEM_TEXT" "INSERT INTO t SELECT pattern_id, agent_name FROM src_pa ON CONFLICT DO NOTHING")
report "membership (text, text) PK, all new" "$ms" "$n_pa" key
ms=$(time_ms "$MEM_TEXT; INSERT INTO t SELECT pattern_id, agent_name FROM src_pa; VACUUM ANALYZE t" \
    "INSERT INTO t SELECT pattern_id, agent_name FROM src_pa ON CONFLICT DO NOTHING")
report "membership (text, text) PK, all existing (probe only)" "$ms" "$n_pa" key
ms=$(time_ms "$MEM_INT" "INSERT INTO t SELECT p, a FROM src_pa_int ON CONFLICT DO NOTHING")
report "membership (int4, int4) PK, all new" "$ms" "$n_pa" key
ms=$(time_ms "$MEM_INT; INSERT INTO t SELECT p, a FROM src_pa_int; VACUUM ANALYZE t" \
    "INSERT INTO t SELECT p, a FROM src_pa_int ON CONFLICT DO NOTHING")
report "membership (int4, int4) PK, all existing (probe only)" "$ms" "$n_pa" key

ms=$(time_ms "DROP TABLE IF EXISTS t; CREATE TABLE t AS SELECT * FROM pattern_lineage_nodes; ALTER TABLE t SET (fillfactor = 70); VACUUM FULL t; CREATE UNIQUE INDEX ON t (pattern_id); ANALYZE t" \
    "UPDATE t SET usage_count = t.usage_count + 1, last_used_at = GREATEST(t.last_used_at, now()), first_used_at = LEAST(t.first_used_at, now()) FROM (SELECT pattern_id FROM pattern_lineage_nodes) s WHERE t.pattern_id = s.pattern_id")
report "pattern rows updated (usage_count, first, last; HOT)" "$ms" "$n_p" row
ms=$(time_ms "DROP TABLE IF EXISTS t; CREATE TABLE t (LIKE pattern_usage_hourly INCLUDING ALL) WITH (fillfactor = 70)" \
    "INSERT INTO t SELECT * FROM src_h")
report "hourly rows inserted, all new (text PK + hour index)" "$ms" "$n_h" row
ms=$(time_ms "DROP TABLE IF EXISTS t; CREATE TABLE t (LIKE pattern_usage_hourly INCLUDING ALL) WITH (fillfactor = 70); INSERT INTO t SELECT * FROM src_h; VACUUM ANALYZE t" \
    "UPDATE t SET usage_count = t.usage_count + s.usage_count FROM src_h s WHERE t.pattern_id = s.pattern_id AND t.hour = s.hour")
report "hourly rows updated, all existing (HOT)" "$ms" "$n_h" row
ms=$(time_ms "DROP TABLE IF EXISTS t; CREATE TABLE t (p int4, hr int4, usage_count int8, PRIMARY KEY (p, hr)) WITH (fillfactor = 70); INSERT INTO t SELECT * FROM src_h_int; VACUUM ANALYZE t" \
    "UPDATE t SET usage_count = t.usage_count + s.usage_count FROM src_h_int s WHERE t.p = s.p AND t.hr = s.hr")
report "hourly rows updated, all existing, integer keys (HOT)" "$ms" "$n_h" row

# Bytes: one value per flush, and lists rewritten whole.
ms=$(time_ms "DROP TABLE IF EXISTS t; CREATE TABLE t (id bigserial, data bytea); ALTER TABLE t ALTER data SET STORAGE EXTERNAL" \
    "INSERT INTO t (data) SELECT string_agg(data, ''::bytea) FROM src_lists")
report "one bytea of every list appended (one row)" "$ms" "$b_l" byte
ms=$(time_ms "DROP TABLE IF EXISTS t; CREATE TABLE t (id bigserial, pattern_id text, data bytea); ALTER TABLE t ALTER data SET STORAGE EXTERNAL; CREATE INDEX ON t (pattern_id)" \
    "INSERT INTO t (pattern_id, data) SELECT pattern_id, data FROM src_lists")
report "one row per list appended (pattern index)" "$ms" "$n_l" row
report "  the same, per byte" "$ms" "$b_l" byte
ms=$(time_ms "DROP TABLE IF EXISTS t; CREATE TABLE t (pattern_id text PRIMARY KEY, data bytea) WITH (fillfactor = 90); ALTER TABLE t ALTER data SET STORAGE EXTERNAL; INSERT INTO t SELECT * FROM src_lists; VACUUM ANALYZE t" \
    "UPDATE t SET data = s.data || '\\x00'::bytea FROM src_lists s WHERE t.pattern_id = s.pattern_id")
report "every list rewritten (one UPDATE)" "$ms" "$b_l" byte
report "  the same, per row" "$ms" "$n_l" row
# A flush's pending lists are a few hundred bytes each (one batch's partners of a pattern):
# stored inline, not in TOAST.
ms=$(time_ms "DROP TABLE IF EXISTS t; CREATE TABLE t (id bigserial, pattern_id text, data bytea); ALTER TABLE t ALTER data SET STORAGE EXTERNAL; CREATE INDEX ON t (pattern_id)" \
    "INSERT INTO t (pattern_id, data) SELECT pattern_id, substring(data FROM 1 FOR 300) FROM src_lists")
report "one row per 300-byte list appended (pattern index)" "$ms" "$n_l" row
ms=$(time_ms "DROP TABLE IF EXISTS t; CREATE TABLE t (id bigserial, pattern_id text, data bytea); ALTER TABLE t ALTER data SET STORAGE EXTERNAL" \
    "INSERT INTO t (pattern_id, data) SELECT pattern_id, substring(data FROM 1 FOR 300) FROM src_lists")
report "one row per 300-byte list appended (no index)" "$ms" "$n_l" row
