#!/usr/bin/env bash
# PostgreSQL restarted, then stalled, while the engine ingests: a restart breaks the flush
# connection mid-stream (the flush fails and is retried on a new connection); a stall (every
# PostgreSQL process stopped with SIGSTOP for 10 s) leaves a flush hanging with no error at
# all. Through both the event loop keeps serving HTTP that needs no database, and afterwards
# every total is exact.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
it_setup pg_stall
pg_pids() { # the postmaster and all its children
    local pm
    pm=$(head -n1 "${PT_PG_SOCKET_DIR%/*}/data/postmaster.pid")
    printf '%s\n' "$pm"
    pgrep -P "$pm" || true
}
resume_pg() { pg_pids | xargs -r kill -CONT 2>/dev/null || true; }
trap 'resume_pg; "$PT_IT_ROOT/scripts/services" start pg >/dev/null; it_cleanup' EXIT
rss_watch
port=$(free_port)

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 120000 --rate 4000 --seed 17 \
    --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!
engine_start HTTP_PORT="$port"
progressed() { [ "$(db_total)" -gt "$1" ]; }
wait_for 60 progressed 0 || it_fail "no first flush"

# 1. Restart (fast shutdown: open transactions are aborted, connections closed).
"$PT_IT_ROOT/scripts/services" restart pg >/dev/null
t0=$EPOCHREALTIME
before=$(db_total)
wait_for 60 progressed "$before" || it_fail "no flush committed after the restart"
rec_restart=$(secs_since "$t0")
kill -0 "$IT_PID" || it_fail "the engine died across the restart"

# 2. Stall: wait for a flush to be running, then stop every PostgreSQL process for 10 s.
flushing() {
    pt_psql -At -c "SELECT count(*) FROM pg_stat_activity
                    WHERE state = 'active' AND query LIKE 'SELECT pt_flush(%'" | grep -qx '[1-9][0-9]*'
}
wait_for 30 flushing || it_fail "never saw a flush running"
stalled_at=$(date +%s)
pg_pids | xargs -r kill -STOP 2>/dev/null || true # a backend may exit just before
kill -0 "$(pg_pids | head -n1)" || it_fail "no postmaster to stop"
# The loop must not wait on the stalled flush: /metrics needs no database.
metrics_ok() {
    local body
    body=$(curl -sf -m 2 "http://127.0.0.1:$port/metrics") && grep -q '^pattern_usage_tracked_total' <<<"$body"
}
served=0
while [ $(($(date +%s) - stalled_at)) -lt 8 ]; do
    metrics_ok || it_fail "/metrics did not answer within 2 s while PostgreSQL was stalled"
    served=$((served + 1))
    sleep 0.5
done
# /health asks PostgreSQL, but within 2 s: a probe gets 503 in time rather than hanging.
code=$(curl -s -m 4 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health") || true
[ "$code" = 503 ] || it_fail "/health answered '$code' (want 503 within 4 s) while PostgreSQL was stalled"
resume_pg
t0=$EPOCHREALTIME
kill -0 "$IT_PID" || it_fail "the engine died during the stall"
before=$(db_total)
wait_for 60 progressed "$before" || it_fail "no flush committed after the stall"
rec_stall=$(secs_since "$t0")

wait "$producer" || it_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth.tsv")
wait_total "$total" 120 || it_fail "totals did not reach $total (now $(db_total))"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ after the restart and stall"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_pg_stall: ok (120000 events; restart: next flush ${rec_restart} s after; 10 s SIGSTOP:" \
    "/metrics served $served times during it, /health 503 in time, next flush ${rec_stall} s after" \
    "SIGCONT; $total uses exact; peak RSS $(rss_peak_mb) MB, $(build_kind) build)"
