#!/usr/bin/env bash
# A flush that needs longer than flush_timeout_ms still commits: every flush here spends 300 ms
# in PostgreSQL (a statement trigger) against flush_timeout_ms = 100, so the first attempt runs
# out of time, and the next ones may take 200, then 400 ms. An abandoned attempt can still
# commit inside PostgreSQL after the engine gave up on it; the offset compare-and-set then
# refuses the retry, so the totals stay exact either way.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    flush_timeout_ms = 100, batch_timeout_ms = 500,' it_setup flush_timeout
slow_flushes 0.3

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 20000 --seed 5 --truth "$IT_DIR/truth.tsv" --quiet
total=$(truth_total "$IT_DIR/truth.tsv")
engine_start
wait_total "$total" 120 || it_fail "totals did not reach $total (now $(db_total))"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ from the ground truth"
timeouts=$(grep -c "flush ran out of time" "$IT_DIR/engine.log" || true)
longer=$(grep -c "the next attempt may take up to 400 ms" "$IT_DIR/engine.log" || true)
[ "$timeouts" -ge 2 ] || it_fail "expected flushes to run out of time (the trigger takes 300 ms), saw $timeouts"
[ "$longer" -ge 1 ] || it_fail "no attempt was given 400 ms after two timeouts in a row"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_flush_timeout: ok ($total uses exact; $timeouts attempts ran out of time, each series" \
    "ended by a longer one)"
