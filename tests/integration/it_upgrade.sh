#!/usr/bin/env bash
# An upgrade in place from the last release before the write path v2 (migration 013, engine of
# b746cc0, built here from this repository's history): that engine counts a first load, then
# this tree's `patterntrack migrate` converts its tables (sql/014_write_path_v2.sql) and every
# total is the ground truth of that load, in the new tables. The upgraded schema is exactly a
# fresh install's (pg_dump --schema-only of both, compared). Then this engine counts a second
# load on top, and every total is the truth of both loads.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
OLD=${PT_UPGRADE_FROM:-b746cc0}
it_setup upgrade
# it_setup migrated with this tree: start again from an empty database for the old engine.
psql "${DATABASE_URL%/*}/postgres" -Xq -v ON_ERROR_STOP=1 -c "DROP DATABASE pt_it_upgrade WITH (FORCE)" \
    -c "CREATE DATABASE pt_it_upgrade" >/dev/null

# The old engine, built once per checkout from git (kept in build/, like every build).
old_dir=$PT_IT_ROOT/build/upgrade-from-$OLD
if [ ! -x "$old_dir/build/patterntrack" ]; then
    rm -rf "$old_dir"
    mkdir -p "$old_dir"
    git -C "$PT_IT_ROOT" archive "$OLD" | tar -x -C "$old_dir" ||
        it_fail "cannot read $OLD from the repository's history"
    cmake -S "$old_dir" -B "$old_dir/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$IT_DIR/old-build.log" 2>&1 &&
        cmake --build "$old_dir/build" --target patterntrack -j2 >>"$IT_DIR/old-build.log" 2>&1 ||
        { tail -n 20 "$IT_DIR/old-build.log" >&2; it_fail "cannot build the engine of $OLD"; }
fi
old() { (cd "$old_dir" && PATTERNTRACK_ROOT="$old_dir" "$old_dir/build/patterntrack" "$@"); }

# truth_merge A B: the truth of both loads (counts summed, first times the earliest, last times
# the latest, per key).
truth_merge() {
    awk -F'\t' -v OFS='\t' '
        function lo(a, b) { return a == "" || b + 0 < a + 0 ? b : a }
        function hi(a, b) { return a == "" || b + 0 > a + 0 ? b : a }
        $1 == "P" { k = $1 FS $2; c[k] += $3; f[k] = lo(f[k], $4); l[k] = hi(l[k], $5); n[k] = 5 }
        $1 == "A" { k = $1 FS $2 FS $3; c[k] += $4; f[k] = lo(f[k], $5); l[k] = hi(l[k], $6); n[k] = 6 }
        $1 == "H" { k = $1 FS $2 FS $3; c[k] += $4; n[k] = 4 }
        $1 == "C" { k = $1 FS $2 FS $3; c[k] += $4; l[k] = hi(l[k], $5); n[k] = 5.5 }
        $1 == "T" { k = $1 FS $2; c[k] += $3; w[k] += $4; d[k] += $5; g[k] += $6; n[k] = 6.5 }
        $1 == "D" { k = $1 FS $2 FS $3; c[k] += $4; n[k] = 4 }
        END {
            for (k in n) {
                if (n[k] == 5) print k, c[k], f[k], l[k]
                else if (n[k] == 6) print k, c[k], f[k], l[k]
                else if (n[k] == 4) print k, c[k]
                else if (n[k] == 5.5) print k, c[k], l[k]
                else print k, c[k], w[k], d[k], g[k]
            }
        }' "$@"
}

# The first load, counted by the old engine.
old migrate --config "$IT_CONFIG" >/dev/null || it_fail "the engine of $OLD could not migrate"
[ "$(pt_psql -tAc "SELECT max(version) FROM schema_migrations")" = 13 ] ||
    it_fail "the engine of $OLD did not leave the database at migration 013"
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --pairs-truth 32 --events 40000 --bad-ratio 0.02 --seed 41 \
    --truth "$IT_DIR/truth-1.tsv" --quiet
(cd "$old_dir" && exec env -u KAFKA_GROUP_ID -u HTTP_PORT PATTERNTRACK_ROOT="$old_dir" \
    "$old_dir/build/patterntrack" run --config "$IT_CONFIG") >>"$IT_DIR/engine-old.log" 2>&1 &
IT_PID=$!
total1=$(truth_total "$IT_DIR/truth-1.tsv")
wait_total "$total1" 120 || it_fail "the engine of $OLD did not count the first load"
engine_stop || it_fail "the engine of $OLD: SIGTERM exit status $?"
old_pairs=$(pt_psql -tAc "SELECT count(*) FROM pattern_agent_usage")

# The upgrade: the same counts in the new tables.
(cd "$PT_IT_ROOT" && "$PT_BIN" migrate --config "$IT_CONFIG" >/dev/null) || it_fail "the upgrade failed"
[ "$(pt_psql -tAc "SELECT count(*) FROM pattern_agents")" = "$old_pairs" ] ||
    it_fail "pattern_agents does not hold the $old_pairs (pattern, agent) keys of before"
check_truth "$IT_DIR/truth-1.tsv" "$IT_PREFIX" || it_fail "the upgrade changed the counts"

# The same schema as a fresh install's.
fresh=${DATABASE_URL%/*}/pt_it_upgrade_fresh
pt_psql -c "DROP DATABASE IF EXISTS pt_it_upgrade_fresh WITH (FORCE)" -c "CREATE DATABASE pt_it_upgrade_fresh" >/dev/null
(cd "$PT_IT_ROOT" && DATABASE_URL=$fresh "$PT_BIN" migrate --config "$IT_CONFIG" >/dev/null) ||
    it_fail "a fresh install failed"
# (pg_dump marks its output with a random \restrict key: not part of the schema)
pg_dump --schema-only --no-owner "$DATABASE_URL" | grep -v '^\\\(un\)\?restrict ' >"$IT_DIR/upgraded.sql"
pg_dump --schema-only --no-owner "$fresh" | grep -v '^\\\(un\)\?restrict ' >"$IT_DIR/fresh.sql"
pt_psql -c "DROP DATABASE pt_it_upgrade_fresh WITH (FORCE)" >/dev/null
if ! diff -u "$IT_DIR/fresh.sql" "$IT_DIR/upgraded.sql" >"$IT_DIR/schema.diff"; then
    head -n 40 "$IT_DIR/schema.diff" >&2
    it_fail "the upgraded schema differs from a fresh install's"
fi

# The second load, counted by this engine on top of the first.
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --pairs-truth 32 --events 30000 --bad-ratio 0.02 --seed 43 \
    --truth "$IT_DIR/truth-2.tsv" --quiet
truth_merge "$IT_DIR/truth-1.tsv" "$IT_DIR/truth-2.tsv" >"$IT_DIR/truth.tsv"
engine_start
wait_total "$(truth_total "$IT_DIR/truth.tsv")" 120 || it_fail "the second load was not counted"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ after the second load"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_upgrade: ok ($OLD at migration 013 with $total1 uses and $old_pairs (pattern, agent) keys," \
    "upgraded exactly; schema as a fresh install's; a second load counted on top exactly)"
