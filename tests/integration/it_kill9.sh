#!/usr/bin/env bash
# Exactly once across crashes: while events are being produced, the engine is killed with
# SIGKILL right after a flush committed and at random moments in between, several times, and
# restarted; at the end every total equals the ground truth: nothing lost, nothing twice.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    batch_max_events = 5000,' it_setup kill9

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 160000 --rate 4000 --bad-ratio 0.01 \
    --seed 11 --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!

RANDOM=4242
progressed() { [ "$(db_total)" -gt "$1" ]; }
kills=0
for round in $(seq 1 "${KILLS:-8}"); do
    kill -0 "$producer" 2>/dev/null || break # everything produced: later kills prove nothing new
    engine_start
    before=$(db_total)
    # Kill after the next commit, plus a random delay of 0..400 ms, so some kills land between
    # flushes and some in the middle of one.
    wait_for 60 progressed "$before" || it_fail "no progress in round $round"
    sleep "0.$(printf '%03d' $((RANDOM % 400)))"
    engine_kill9
    kills=$((kills + 1))
done
wait "$producer" || it_fail "the producer failed"
[ "$kills" -ge "${MIN_KILLS:-5}" ] || it_fail "only $kills kills happened while events were produced"
total=$(truth_total "$IT_DIR/truth.tsv")
engine_start
wait_total "$total" 180 || it_fail "after $kills kills totals did not reach $total (now $(db_total))"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ after $kills kills"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_kill9: ok ($kills kill -9, $total uses exact)"
