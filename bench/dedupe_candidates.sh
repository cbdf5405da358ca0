#!/usr/bin/env bash
# What PostgreSQL spends per event ID for each way event-ID deduplication could keep its claims
# (issue "event-ID deduplication"): one row per (topic, event ID) claim, keyed by a 128-bit hash,
# with different ways to find the expired ones. Not a test: it prints figures.
#
#   bench/dedupe_candidates.sh [ROWS] [BATCH] [RUNS]
#     ROWS   claims already in the table, the window's worth (default 1000000)
#     BATCH  claims per statement, a flush's worth (default 20000)
#     RUNS   repetitions; the median is printed (default 5)
#
# Runs in a scratch database (pt_dedupe_cand), with synchronous_commit off as a flush of Kafka
# events commits. Each statement is the one the engine would send (arrays in, one row per
# claim), timed with \timing; per-claim figures divide by BATCH.
set -euo pipefail
ROWS=${1:-1000000}
BATCH=${2:-20000}
RUNS=${3:-5}
base=${DATABASE_URL%/*}
DB="$base/pt_dedupe_cand"

q() { psql "$DB" -XqAt -v ON_ERROR_STOP=1 "$@"; }

psql "$DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS pt_dedupe_cand WITH (FORCE)" \
    -c "CREATE DATABASE pt_dedupe_cand" >/dev/null

. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
report() {
    awk -v n="$1" -v ms="$2" -v u="$3" \
        'BEGIN { printf "%-70s %9.1f ms %8.2f us/claim\n", n, ms, ms * 1000 / u }'
}

# A claim: the event's key (hash of topic and ID) is taken by the first Kafka position that
# asks for it, or again by that same position, or by anyone once it expired; RETURNING names
# the claims this position holds.
claim_fn() { # NAME
    cat <<SQL
CREATE OR REPLACE FUNCTION claim_$1(k uuid[], p int[], o bigint[]) RETURNS bigint
LANGUAGE sql AS \$\$
WITH c AS (
    INSERT INTO $1 AS c (key, part, off, expires_at)
    SELECT key, part, off, now() + interval '1 hour'
      FROM unnest(k, p, o) AS x(key, part, off) ORDER BY key
    ON CONFLICT (key) DO UPDATE SET part = EXCLUDED.part, off = EXCLUDED.off,
                                    expires_at = EXCLUDED.expires_at
     WHERE c.expires_at < now() OR (c.part = EXCLUDED.part AND c.off = EXCLUDED.off)
    RETURNING 1)
SELECT count(*) FROM c
\$\$;
SQL
}

variant() { # NAME INDEX_DDL
    q <<SQL
DROP TABLE IF EXISTS $1;
CREATE TABLE $1 (key uuid PRIMARY KEY, part int NOT NULL, off bigint NOT NULL,
                 expires_at timestamptz NOT NULL);
INSERT INTO $1 SELECT gen_random_uuid(), 0, g, now() + interval '1 hour' * g / $ROWS
  FROM generate_series(1, $ROWS) g;
$2;
VACUUM ANALYZE $1;
$(claim_fn "$1")
SQL
}

echo "claims in the table: $ROWS; claims per statement: $BATCH; median of $RUNS"
NEW="DROP TABLE IF EXISTS inp; CREATE TABLE inp AS SELECT array_agg(gen_random_uuid()) k, array_agg(1) p, array_agg(g::bigint) o FROM generate_series(1, $BATCH) g"
# 1 % of the batch copies of claims already held by other positions (the duplicates)
DUP="DROP TABLE IF EXISTS inp; CREATE TABLE inp AS SELECT array_agg(k) k, array_agg(1) p, array_agg(g::bigint) o FROM (SELECT gen_random_uuid() k, g FROM generate_series(1, $BATCH - $BATCH / 100) g UNION ALL SELECT key, -1 FROM (SELECT key FROM %T ORDER BY random() LIMIT $BATCH / 100) d) x(k, g)"
# a batch consumed again after a crash: every claim is its own
AGAIN="DROP TABLE IF EXISTS inp; CREATE TABLE inp AS SELECT array_agg(key) k, array_agg(part) p, array_agg(off) o FROM (SELECT * FROM %T ORDER BY random() LIMIT $BATCH) x"
# the oldest BATCH claims expire
EXPIRE="UPDATE %T SET expires_at = now() - interval '1 second' WHERE part = 0 AND off <= (SELECT min(off) FROM %T WHERE part = 0) + $BATCH - 1"

for v in "c_btree:CREATE INDEX ON c_btree (expires_at)" "c_brin:CREATE INDEX ON c_brin USING brin (expires_at)" "c_none:"; do
    name=${v%%:*}
    variant "$name" "${v#*:}"
    ms=$(time_ms "$NEW" "SELECT claim_$name(k, p, o) FROM inp")
    report "$name: new claims" "$ms" "$BATCH"
    ms=$(time_ms "${DUP//%T/$name}" "SELECT claim_$name(k, p, o) FROM inp")
    report "$name: new claims, 1 % duplicates" "$ms" "$BATCH"
    ms=$(time_ms "${AGAIN//%T/$name}" "SELECT claim_$name(k, p, o) FROM inp")
    report "$name: the same positions again (after a crash)" "$ms" "$BATCH"
    ms=$(time_ms "${EXPIRE//%T/$name}" "DELETE FROM $name WHERE expires_at < now()")
    report "$name: delete $BATCH expired claims" "$ms" "$BATCH"
    ms=$(time_ms "${EXPIRE//%T/$name}; DELETE FROM $name WHERE expires_at < now()" "VACUUM $name")
    report "$name: vacuum after deleting $BATCH expired claims" "$ms" "$BATCH"
done
q -c "SELECT pg_size_pretty(pg_total_relation_size('c_btree')), pg_size_pretty(pg_relation_size('c_btree'))"
psql "$DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS pt_dedupe_cand WITH (FORCE)" >/dev/null
