#!/usr/bin/env bash
# The Kafka broker stopped under the engine: HTTP keeps answering (and /health says the brokers
# are unreachable), the engine reconnects when the broker is back, and the totals of events
# produced before and after the outage are exact.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
it_setup kafka_down
start_kafka() { "$PT_IT_ROOT/scripts/services" start kafka >/dev/null; }
trap 'start_kafka; it_cleanup' EXIT
rss_watch

# One producer across the outage: librdkafka keeps undelivered events and retries them. One
# request in flight per broker: with several, an idempotent producer whose partition leader
# went away mid-request can come back out of sequence with the restarted broker ("sequence
# desynchronization", fatal for the producer, seen once in many runs), which is the load
# generator failing, not the engine.
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 40000 --rate 2000 --seed 21 --in-flight 1 \
    --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!
port=$(free_port)
engine_start HTTP_PORT="$port"
progressed() { [ "$(db_total)" -gt 0 ]; }
wait_for 60 progressed || it_fail "nothing counted before the outage"

"$PT_IT_ROOT/scripts/services" stop kafka >/dev/null
brokers_down() {
    curl -sf "http://127.0.0.1:$port/health" | grep -q '"brokers_reachable":false'
}
wait_for 90 brokers_down || it_fail "/health never reported the brokers as unreachable"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/patterns/usage/summary")
[ "$code" = 200 ] || it_fail "summary answered $code while Kafka was down"
kill -0 "$IT_PID" || it_fail "the engine died while Kafka was down"
start_kafka
t0=$EPOCHREALTIME
wait "$producer" || it_fail "the producer failed across the outage"
total=$(truth_total "$IT_DIR/truth.tsv")
wait_total "$total" 180 || it_fail "totals did not reach $total after Kafka came back (now $(db_total))"
recovery=$(secs_since "$t0")
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ after the broker outage"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_kafka_down: ok (40000 events, $total uses exact across a broker outage, ${recovery} s" \
    "after the broker was back; peak RSS $(rss_peak_mb) MB, $(build_kind) build)"
