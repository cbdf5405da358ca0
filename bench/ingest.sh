#!/usr/bin/env bash
# Ingest benchmark: events/s from the first event produced until every total in PostgreSQL is
# exact, the same until no co-occurrence pair is left to merge, and the engine's peak RSS. Not
# a test: it asserts nothing about speed, it measures.
#
#   bench/ingest.sh [EVENTS] [RUNS] [MODE]
#     EVENTS  events per run (default 1000000)
#     RUNS    runs; the median is reported (default 3)
#     MODE    live    - engine running, pt-loadgen produces as fast as it can (the issue's
#                       definition: first event produced .. totals exact)
#             backlog - events produced first; timed from engine start .. totals exact
#                       (the engine's own drain rate, without the producer on the same cores)
# Needs `make build` and `eval "$(scripts/services up)"`. Extra pt-loadgen flags via
# LOADGEN_ARGS (default: 10,000 patterns, 500 agents, Zipf 1.1, up to 8 references, event times
# within the last hour as live traffic has them); extra engine options via EXTRA_CONFIG, e.g.
# EXTRA_CONFIG='cooccurrence_max_patterns = 0,'. PT_BENCH_LOGS=DIR keeps each run's engine log
# there (with EXTRA_CONFIG='log_level = "debug",' it times every flush and merge).
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
. "$ROOT/tests/integration/lib.sh"
EVENTS=${1:-1000000}
RUNS=${2:-3}
MODE=${3:-live}
BIN=${PT_BIN:-$ROOT/build/patterntrack}
LOADGEN_ARGS=${LOADGEN_ARGS:---patterns 10000 --agents 500 --zipf 1.1 --refs-max 8 --time-span-hours 1}
base=${DATABASE_URL%/*}
results=()
mresults=()
rss=()

now() { date +%s.%N; }

for run in $(seq 1 "$RUNS"); do
    psql "$DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS pt_bench WITH (FORCE)" -c "CREATE DATABASE pt_bench" >/dev/null
    export DATABASE_URL="$base/pt_bench"
    prefix="bench-$$-$run-"
    dir=$(mktemp -d /tmp/pt-bench.XXXXXX)
    for t in agent-manifest-injections agent-actions agent-routing-decisions; do
        "$ROOT/scripts/services" topic "$prefix$t" >/dev/null
    done
    cat >"$dir/config.lua" <<LUA
return {
    topics = {
        ["${prefix}agent-manifest-injections"] = "rules/agent-manifest-injections.lua",
        ["${prefix}agent-actions"] = "rules/agent-actions.lua",
        ["${prefix}agent-routing-decisions"] = "rules/agent-routing-decisions.lua",
    },
    kafka_group_id = "g-$prefix",
    http_port = 0,
    log_level = "warn",
${EXTRA_CONFIG:-}
}
LUA
    (cd "$ROOT" && "$BIN" migrate --config "$dir/config.lua" >/dev/null)
    if [ "$MODE" = backlog ]; then
        # shellcheck disable=SC2086
        "$PT_LOADGEN" --topic-prefix "$prefix" --events "$EVENTS" --seed "$run" --truth "$dir/truth.tsv" --quiet $LOADGEN_ARGS
        t0=$(now)
        (cd "$ROOT" && exec "$BIN" run --config "$dir/config.lua") 2>"$dir/engine.log" &
        pid=$!
    else
        (cd "$ROOT" && exec "$BIN" run --config "$dir/config.lua") 2>"$dir/engine.log" &
        pid=$!
        ready() { grep -q "consuming" "$dir/engine.log"; }
        wait_for 60 ready
        t0=$(now)
        # shellcheck disable=SC2086
        "$PT_LOADGEN" --topic-prefix "$prefix" --events "$EVENTS" --seed "$run" --truth "$dir/truth.tsv" --quiet $LOADGEN_ARGS
    fi
    total=$(truth_total "$dir/truth.tsv")
    exact() { [ "$(db_total)" = "$total" ]; }
    wait_for 1800 exact
    t1=$(now)
    # Co-occurrence pairs are exact in every answer once flushed (pending ones are added), but
    # the engine merges them into pattern_cooccurrence_merged afterwards: the time until none is
    # pending is what sustained load needs.
    merged() { [ "$(psql "$DATABASE_URL" -XtAc "SELECT count(*) FROM pattern_cooccurrence_pending")" = 0 ]; }
    wait_for 1800 merged
    t2=$(now)
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"
    wait "$pid"
    check_truth "$dir/truth.tsv" "$prefix" >/dev/null
    rate=$(awk -v n="$EVENTS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    mrate=$(awk -v n="$EVENTS" -v a="$t0" -v b="$t2" 'BEGIN { printf "%.0f", n / (b - a) }')
    echo "run $run: $EVENTS events in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s = $rate events/s, peak RSS $((hwm / 1024)) MB, totals exact; co-occurrence merged after $(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f", b - a }') s = $mrate events/s" >&2
    results+=("$rate")
    mresults+=("$mrate")
    rss+=("$hwm")
    if [ -n "${PT_BENCH_LOGS:-}" ]; then
        cp "$dir/engine.log" "$PT_BENCH_LOGS/engine-$run.log"
    fi
    rm -rf "$dir"
    export DATABASE_URL="$base/patterntrack"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "mode=$MODE events=$EVENTS runs=$RUNS median_events_per_s=$(median "${results[@]}") median_merged_events_per_s=$(median "${mresults[@]}") median_peak_rss_mb=$(( $(median "${rss[@]}") / 1024 ))"
