#!/usr/bin/env bash
# Freshness: the time from an event's production to its count in the API, under live ingest.
# Measures, asserts nothing.
#
#   bench/freshness.sh [INGEST_RATE] [DURATION_S] [MARKERS_PER_S]   (defaults 10000, 60, 4)
#
# The database is bench/api.sh's (pt_bench_api, 100,000 patterns and 10 M uses; run
# `bench/api.sh 1 0 1` once to make it) or, when it does not exist, an empty one. An engine
# with its own topics and group ingests pt-loadgen's events at INGEST_RATE events/s. Meanwhile
# a marker event naming a pattern of its own goes to agent-actions MARKERS_PER_S times a second,
# each produced with kcat under one key (one partition, so markers are counted in order); its
# production time is taken when kcat returns (the broker has it). A poller asks the API
# (GET /api/patterns/usage/<marker>) for the oldest marker not seen yet, every 20 ms; a
# marker's freshness is the time from its production to the first answer that counts it.
# Prints the percentiles over the markers. EXTRA_CONFIG adds engine options (e.g.
# 'log_level = "debug",' times every flush and fold); PT_BENCH_LOGS=DIR keeps the engine's log
# and the markers' times there.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/bench/lib.sh"
RATE=${1:-10000}
DUR=${2:-60}
MPS=${3:-4}
BIN=${PT_BIN:-$ROOT/build/patterntrack}
base=${DATABASE_URL%/*}
if psql "$base/pt_bench_api" -XtAc "SELECT 1" >/dev/null 2>&1; then
    export DATABASE_URL="$base/pt_bench_api"
else
    psql "$DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS pt_bench_fresh WITH (FORCE)" \
        -c "CREATE DATABASE pt_bench_fresh" >/dev/null
    export DATABASE_URL="$base/pt_bench_fresh"
fi
dir=$(mktemp -d /tmp/pt-bench-fresh.XXXXXX)
prefix="fresh-$$-"
bench_topics "$prefix"
port=$(free_port)
bench_config "$dir/config.lua" "$prefix" "    kafka_start_offset = \"latest\", http_port = $port, log_level = \"info\",
${EXTRA_CONFIG:-}"
(cd "$ROOT" && "$BIN" migrate --config "$dir/config.lua" >/dev/null)
(cd "$ROOT" && exec "$BIN" run --config "$dir/config.lua") 2>"$dir/engine.log" &
pid=$!
lg=
cleanup() {
    [ -n "$lg" ] && kill "$lg" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ -n "${PT_BENCH_LOGS:-}" ]; then
        cp "$dir/engine.log" "$dir/sent" "$dir/seen" "$PT_BENCH_LOGS/" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
assigned() { grep -q "partitions assigned" "$dir/engine.log"; }
wait_for 60 assigned
"$PT_LOADGEN" --topic-prefix "$prefix" --events $((RATE * (DUR + 10))) --rate "$RATE" \
    --patterns 100000 --agents 1000 --time-span-hours 1 --quiet >"$dir/loadgen.log" 2>&1 &
lg=$!
sleep 2 # ingest under way before the first marker
broker=${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:59092}
: >"$dir/sent"
: >"$dir/seen"
now_ms() { date +%s%3N; }
# producer: marker N at its production time, one line each in $dir/sent
(
    n=0
    end=$(($(now_ms) + DUR * 1000))
    gap=$((1000 / MPS))
    while [ "$(now_ms)" -lt "$end" ]; do
        n=$((n + 1))
        t=$(now_ms)
        printf '{"agent_name": "fresh", "patterns": ["%smark-%d"]}\n' "$prefix" "$n" |
            kcat -P -q -b "$broker" -t "${prefix}agent-actions" -k marker
        echo "$n $(now_ms)" >>"$dir/sent"
        left=$((t + gap - $(now_ms)))
        [ "$left" -gt 0 ] && sleep "$(awk -v ms="$left" 'BEGIN { printf "%.3f", ms / 1000 }')"
    done
    echo done >"$dir/produced"
) &
producer=$!
# poller: the oldest marker not seen yet, until all are seen (or 30 s after the last)
seen=0
deadline=
while :; do
    sent=$(wc -l <"$dir/sent" 2>/dev/null || echo 0)
    if [ -e "$dir/produced" ]; then
        [ "$seen" -ge "$sent" ] && break
        deadline=${deadline:-$(($(now_ms) + 30000))}
        [ "$(now_ms)" -gt "$deadline" ] && break
    fi
    while [ "$seen" -lt "$sent" ]; do
        next=$((seen + 1))
        body=$(curl -s -m 2 "http://127.0.0.1:$port/api/patterns/usage/${prefix}mark-$next" || true)
        case $body in
        *'"usage_count":1'* | *'"usage_count": 1'*)
            echo "$next $(now_ms)" >>"$dir/seen"
            seen=$next
            ;;
        *) break ;;
        esac
    done
    sleep 0.02
done
wait "$producer"
sent=$(wc -l <"$dir/sent")
lost=$((sent - seen))
awk 'NR == FNR { t[$1] = $2; next } ($1 in t) { print $2 - t[$1] }' "$dir/sent" "$dir/seen" |
    sort -n >"$dir/fresh"
n=$(wc -l <"$dir/fresh")
pct() { awk -v p="$1" '{ a[NR] = $1 } END { i = int(NR * p / 100 + 0.999); if (i < 1) i = 1; print a[i] }' "$dir/fresh"; }
echo "freshness over $n markers at $RATE events/s ingest ($lost not seen within 30 s):" \
    "p50 $(pct 50) ms, p90 $(pct 90) ms, p99 $(pct 99) ms, max $(tail -n1 "$dir/fresh") ms"
