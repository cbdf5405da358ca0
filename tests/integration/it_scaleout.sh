#!/usr/bin/env bash
# Scale-out: several engines in one consumer group share 6-partition topics. Two start, a third
# joins mid-stream, one is killed with SIGKILL (its partitions move to the others once its
# session expires, at the offsets stored in PostgreSQL), and a fourth joins late. Every total
# equals the ground truth: a partition that changed hands was neither skipped nor counted twice.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    batch_max_events = 4000,' it_setup scaleout

rss_watch
declare -A PIDS=()
inst_start() { # inst_start K: engine K with its own static member id and log
    local k=$1
    sed "s/\"$IT_GROUP-1\"/\"$IT_GROUP-$k\"/" "$IT_CONFIG" >"$IT_DIR/config-$k.lua"
    (cd "$PT_IT_ROOT" && exec env -u KAFKA_GROUP_ID -u HTTP_PORT "$PT_BIN" run \
        --config "$IT_DIR/config-$k.lua") >>"$IT_DIR/engine-$k.log" 2>&1 &
    PIDS[$k]=$!
}
cleanup_all() {
    local k
    for k in "${!PIDS[@]}"; do kill -9 "${PIDS[$k]}" 2>/dev/null || true; done
    it_cleanup
}
trap cleanup_all EXIT
scale_fail() {
    local k
    echo "FAIL: $*" >&2
    for k in "${!PIDS[@]}"; do
        echo "--- engine $k log (tail) ---" >&2
        tail -n 15 "$IT_DIR/engine-$k.log" >&2 || true
    done
    exit 1
}
# assigned K: engine K has taken partitions at least once (it logs each assignment).
assigned() { grep -q 'partitions assigned' "$IT_DIR/engine-$1.log"; }
progressed() { [ "$(db_total)" -gt "$1" ]; }

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --pairs-truth 32 --events 150000 --rate 5000 --bad-ratio 0.01 \
    --seed 31 --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!

inst_start 1
inst_start 2
wait_for 60 assigned 1 || scale_fail "engine 1 never got partitions"
wait_for 60 assigned 2 || scale_fail "engine 2 never got partitions"
wait_for 60 progressed 0 || scale_fail "nothing counted by two engines"

inst_start 3 # joins mid-stream: the group rebalances while both others flush
wait_for 60 assigned 3 || scale_fail "engine 3 never got partitions"
before=$(db_total)
wait_for 60 progressed "$before" || scale_fail "no progress after engine 3 joined"

kill -9 "${PIDS[2]}" # its partitions move after session.timeout.ms (6 s)
wait "${PIDS[2]}" 2>/dev/null || true
unset 'PIDS[2]'
t0=$EPOCHREALTIME
moved() { [ "$(grep -c 'partitions assigned' "$IT_DIR/engine-1.log" "$IT_DIR/engine-3.log" |
    awk -F: '{ s += $2 } END { print s }')" -gt "$1" ]; }
assigned_before=$(grep -c 'partitions assigned' "$IT_DIR/engine-1.log" "$IT_DIR/engine-3.log" |
    awk -F: '{ s += $2 } END { print s }')
wait_for 60 moved "$assigned_before" || scale_fail "engine 2's partitions never moved to the others"
rec_move=$(secs_since "$t0")
before=$(db_total)
wait_for 60 progressed "$before" || scale_fail "no progress after engine 2 was killed"

inst_start 4 # joins late, while the killed member's partitions may still be moving
wait_for 60 assigned 4 || scale_fail "engine 4 never got partitions"

wait "$producer" || scale_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth.tsv")
wait_total "$total" 180 || scale_fail "totals did not reach $total (now $(db_total))"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || scale_fail "totals differ after the scale-out"

# The stored offsets add up to every message produced, per topic: the group as a whole committed
# all of it, whoever held each partition last (offsets of a fresh topic start at 0, no gaps).
want=$(awk -F'\t' '$1 == "T" { printf "%s %s\n", $2, $3 }' "$IT_DIR/truth.tsv" | sort)
got=$(pt_psql -At -F' ' -c "SELECT topic, sum(next_offset) FROM usage_consumer_offsets
                            WHERE group_id = '$IT_GROUP' GROUP BY topic ORDER BY topic" | sort)
[ "$want" = "$got" ] || scale_fail "stored offsets per topic: $got; produced: $want"
for k in 1 3 4; do
    kill -TERM "${PIDS[$k]}"
    rc=0
    wait "${PIDS[$k]}" || rc=$?
    unset "PIDS[$k]"
    [ "$rc" -eq 0 ] || scale_fail "engine $k: SIGTERM exit status $rc"
done
echo "it_scaleout: ok (150000 events; 4 engines, 1 kill -9 (its partitions reassigned ${rec_move} s" \
    "later), 2 joins mid-stream; $total uses exact; peak RSS $(rss_peak_mb) MB per engine, $(build_kind) build)"
