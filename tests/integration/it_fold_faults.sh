#!/usr/bin/env bash
# Folds under faults: while events are produced, a fold (src/fold.c: partner lists of patterns
# and agents merged into pattern_lists and agent_lists) is caught inside its transaction and
#   - the engine is killed with SIGKILL,
#   - PostgreSQL is restarted (fast: every backend ends, the fold's with it),
#   - a second engine joins the consumer group, and later leaves (two rebalances),
# in turn, several times. A fold commits whole or not at all: what it had taken stays pending.
# At the end everything is folded and every total equals the ground truth.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    fold_interval_ms = 200,' it_setup fold_faults
# Slow folds: each fold's write of pattern lists sleeps first (a statement trigger), so that a
# fault aimed at a running fold lands inside its transaction.
slow_folds() {
    pt_psql -c "CREATE OR REPLACE FUNCTION it_slow_fold() RETURNS trigger LANGUAGE plpgsql AS
                \$\$ BEGIN PERFORM pg_sleep($1); RETURN NULL; END \$\$;
                DROP TRIGGER IF EXISTS it_slow_fold ON pattern_lists;
                CREATE TRIGGER it_slow_fold BEFORE INSERT ON pattern_lists
                   FOR EACH STATEMENT EXECUTE FUNCTION it_slow_fold();" >/dev/null
}
slow_folds 1.0
# fold_running: a fold of this database is inside its transaction, writing pattern lists.
fold_running() {
    [ "$(pt_psql -tAc "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                        AND state = 'active' AND query LIKE 'INSERT INTO pattern_lists AS m%'")" -gt 0 ]
}
pending() { pt_psql -tAc "SELECT (SELECT count(*) FROM pattern_lists_pending) + (SELECT count(*) FROM agent_lists_pending)"; }
none_pending() { [ "$(pending)" = 0 ]; }

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --pairs-truth 32 --events 90000 --rate 3000 --bad-ratio 0.01 \
    --seed 23 --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!

second=
second_start() {
    # engine-2.log is appended to: what this start wrote begins after line second_from
    second_from=0
    if [ -e "$IT_DIR/engine-2.log" ]; then
        second_from=$(wc -l <"$IT_DIR/engine-2.log")
    fi
    sed "s/\"$IT_GROUP-1\"/\"$IT_GROUP-2\"/" "$IT_CONFIG" >"$IT_DIR/config-2.lua"
    (cd "$PT_IT_ROOT" && exec env -u KAFKA_GROUP_ID -u HTTP_PORT "$PT_BIN" run \
        --config "$IT_DIR/config-2.lua") >>"$IT_DIR/engine-2.log" 2>&1 &
    second=$!
}
trap 'if [ -n "$second" ]; then kill -9 "$second" 2>/dev/null || true; fi; it_cleanup' EXIT

kills=0 restarts=0 rebalances=0
engine_start
for round in 1 2 3 4 5 6; do
    wait_for 60 fold_running || it_fail "no fold seen running in round $round"
    case $((round % 3)) in
        1)
            engine_kill9
            kills=$((kills + 1))
            engine_start
            ;;
        2)
            "$PT_IT_ROOT/scripts/services" restart pg >/dev/null 2>&1 || it_fail "PostgreSQL did not restart"
            restarts=$((restarts + 1))
            ;;
        0)
            second_start
            joined() { tail -n +$((second_from + 1)) "$IT_DIR/engine-2.log" | grep -q 'partitions assigned'; }
            wait_for 60 joined || it_fail "the second engine did not join"
            wait_for 60 fold_running || it_fail "no fold seen running while two engines run"
            kill -TERM "$second"
            wait "$second" || it_fail "the second engine did not stop cleanly"
            second=
            rebalances=$((rebalances + 2))
            ;;
    esac
done
wait "$producer" || it_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth.tsv")
wait_total "$total" 180 || it_fail "totals did not reach $total (now $(db_total))"
# Exact while lists are still pending (the answers add them) ...
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ with lists pending"
# ... and once every one is folded, at full speed again.
pt_psql -c "DROP TRIGGER it_slow_fold ON pattern_lists" >/dev/null
wait_for 120 none_pending || it_fail "the lists were not all folded ($(pending) pending rows)"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ once everything is folded"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_fold_faults: ok (90000 events; a fold caught in its transaction $kills times by kill -9," \
    "$restarts times by a PostgreSQL restart, $rebalances rebalances; $total uses exact," \
    "pending and folded)"
