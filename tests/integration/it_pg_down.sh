#!/usr/bin/env bash
# PostgreSQL stopped while the engine flushes under load: flushes fail and are retried with
# backoff, the engine keeps running, and when PostgreSQL is back every total is exact.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
it_setup pg_down
restart_pg() { "$PT_IT_ROOT/scripts/services" start pg >/dev/null; }
trap 'restart_pg; it_cleanup' EXIT
rss_watch

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --pairs-truth 32 --events 80000 --rate 10000 --seed 5 \
    --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!
engine_start
progressed() { [ "$(db_total)" -gt 0 ]; }
wait_for 60 progressed || it_fail "no first flush"
"$PT_IT_ROOT/scripts/services" stop pg >/dev/null
failed_twice() { [ "$(grep -c 'flush failed' "$IT_DIR/engine.log")" -ge 2 ]; }
wait_for 60 failed_twice || it_fail "the engine did not notice PostgreSQL was gone"
kill -0 "$IT_PID" || it_fail "the engine died while PostgreSQL was down"
restart_pg
t0=$EPOCHREALTIME
before=$(db_total)
grew() { [ "$(db_total)" -gt "$1" ]; }
wait_for 120 grew "$before" || it_fail "no flush committed after PostgreSQL came back"
recovery=$(secs_since "$t0")
wait "$producer" || it_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth.tsv")
wait_total "$total" 120 || it_fail "totals did not reach $total after PostgreSQL came back (now $(db_total))"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ after the outage"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_pg_down: ok (80000 events, $total uses exact; first flush ${recovery} s after PostgreSQL" \
    "was back; peak RSS $(rss_peak_mb) MB, $(build_kind) build)"
