#!/usr/bin/env bash
# Soak (make soak; not part of make test): events stream in for SOAK_MINUTES (default 30) at
# SOAK_RATE events/s (default 3000) while a fault is injected every SOAK_FAULT_S seconds
# (default 60), in turn: kill -9 and restart of the engine, PostgreSQL restart, Kafka broker
# restart, a reload (SIGHUP), PostgreSQL stalled by SIGSTOP for 10 s. The engine's resident
# memory is sampled every second. At the end every total must equal the ground truth.
# Prints one line per fault (with the seconds until the next committed flush) and a summary.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
MINUTES=${SOAK_MINUTES:-30}
RATE=${SOAK_RATE:-3000}
FAULT_S=${SOAK_FAULT_S:-60}
it_setup soak
svc() { "$PT_IT_ROOT/scripts/services" "$@" >/dev/null; }
pg_pids() {
    local pm
    pm=$(head -n1 "${PT_PG_SOCKET_DIR%/*}/data/postmaster.pid")
    printf '%s\n' "$pm"
    pgrep -P "$pm" || true
}
trap 'pg_pids | xargs -r kill -CONT 2>/dev/null || true; svc start pg; svc start kafka; it_cleanup' EXIT

events=$((MINUTES * 60 * RATE))
# --in-flight 1: the broker is restarted under the producer (see it_kafka_down.sh)
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events "$events" --rate "$RATE" --bad-ratio 0.01 \
    --in-flight 1 --seed 77 --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!
engine_start
progressed() { [ "$(db_total)" -gt "$1" ]; }
wait_for 120 progressed 0 || it_fail "no first flush"

peak=0
sample_until() { # sample_until EPOCH: samples RSS every second until then
    local r
    while [ "$(date +%s)" -lt "$1" ]; do
        if [ -n "$IT_PID" ] && r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$IT_PID/status" 2>/dev/null); then
            [ "${r:-0}" -gt "$peak" ] && peak=$r
        fi
        sleep 1
    done
}
recovered() { # seconds until the next committed flush
    local t0 before
    t0=$(date +%s.%N)
    before=$(db_total)
    wait_for 300 progressed "$before" || it_fail "no flush committed after: $1"
    printf '%s\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
}
faults=0
end=$(($(date +%s) + MINUTES * 60))
while kill -0 "$producer" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do
    sample_until $(($(date +%s) + FAULT_S))
    kill -0 "$producer" 2>/dev/null || break
    case $((faults % 5)) in
    0) what="engine kill -9 + restart"; engine_kill9; engine_start ;;
    1) what="PostgreSQL restart"; svc restart pg ;;
    2) what="Kafka broker restart"; svc restart kafka ;;
    3) what="reload (SIGHUP)"; kill -HUP "$IT_PID" ;;
    4) what="PostgreSQL SIGSTOP 10 s"
       pg_pids | xargs -r kill -STOP 2>/dev/null || true
       sample_until $(($(date +%s) + 10))
       pg_pids | xargs -r kill -CONT 2>/dev/null || true ;;
    esac
    faults=$((faults + 1))
    kill -0 "$IT_PID" || it_fail "the engine died after: $what"
    printf 'soak: %s at %s: next flush committed %.1f s later\n' "$what" "$(date -u +%T)" "$(recovered "$what")"
done
wait "$producer" || it_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth.tsv")
wait_total "$total" 600 || it_fail "totals did not reach $total (now $(db_total))"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ after the soak"
engine_stop || it_fail "SIGTERM exit status $?"
echo "soak: ok ($MINUTES min, $events events at $RATE/s, $faults faults, peak RSS $((peak / 1024)) MB, $total uses exact)"
