#!/usr/bin/env bash
# Memory stays bounded while PostgreSQL is down for 60 s under load: the unflushed batches grow
# to max_buffer_mb, then the consumer pauses its partitions (back-pressure) instead of buffering
# what keeps arriving. The engine's resident memory is sampled through the outage; its peak
# must stay within the configured buffer plus librdkafka's fetch queue plus a fixed allowance,
# far below what was produced meanwhile. Afterwards every total is exact.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
need_plain_bin # resident memory of the engine as shipped, not of a sanitized one
BUFFER_MB=8
OUTAGE_S=${OUTAGE_S:-60}
IT_EXTRA_CONFIG="    max_buffer_mb = $BUFFER_MB," it_setup outage_memory
restart_pg() { "$PT_IT_ROOT/scripts/services" start pg >/dev/null; }
trap 'restart_pg; it_cleanup' EXIT
port=$(free_port)
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$IT_PID/status"; }
metric() { # metric NAME: its value in /metrics (first series)
    local body
    body=$(curl -sf -m 2 "http://127.0.0.1:$port/metrics") || return 1
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { print $2; exit }' <<<"$body"
}

rate=4000
events=$(((OUTAGE_S + 25) * rate))
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events "$events" --rate "$rate" --seed 23 \
    --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!
engine_start HTTP_PORT="$port"
progressed() { [ "$(db_total)" -gt "$1" ]; }
wait_for 60 progressed 0 || it_fail "no first flush"
before=$(db_total)
wait_for 60 progressed "$before" || it_fail "no second flush"
base=$(rss_kb)

"$PT_IT_ROOT/scripts/services" stop pg >/dev/null
start=$(date +%s)
peak=$base paused=0
while [ $(($(date +%s) - start)) -lt "$OUTAGE_S" ]; do
    kill -0 "$IT_PID" 2>/dev/null || it_fail "the engine died during the outage"
    r=$(rss_kb)
    [ "$r" -gt "$peak" ] && peak=$r
    [ "$(metric patterntrack_consumer_paused)" = 1 ] && paused=1
    sleep 0.5
done
kill -0 "$producer" 2>/dev/null || it_fail "the producer finished before the outage ended (the load must outlast it)"
restart_pg
t0=$EPOCHREALTIME
before=$(db_total)
wait_for 120 progressed "$before" || it_fail "no flush committed after PostgreSQL came back"
recovery=$(secs_since "$t0")

grow_mb=$(((peak - base) / 1024))
# Allowance: the buffer, librdkafka's fetch queue (queued.max.messages.kbytes = 8 MB), and 32 MB
# for allocator slack and the aggregate's hash tables growing by doubling.
limit_mb=$((BUFFER_MB + 8 + 32))
[ "$paused" = 1 ] || it_fail "the consumer never paused during the outage"
[ "$grow_mb" -le "$limit_mb" ] ||
    it_fail "memory grew by $grow_mb MB during the outage (limit $limit_mb MB; base $((base / 1024)) MB)"

wait "$producer" || it_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth.tsv")
wait_total "$total" 240 || it_fail "totals did not reach $total after PostgreSQL came back (now $(db_total))"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ after the outage"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_outage_memory: ok (PostgreSQL down ${OUTAGE_S} s, $((OUTAGE_S * rate)) events produced meanwhile;" \
    "RSS $((base / 1024)) -> peak $((peak / 1024)) MB, +$grow_mb MB <= $limit_mb MB; first flush" \
    "${recovery} s after PostgreSQL was back; $total uses exact)"
