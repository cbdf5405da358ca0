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
# PT_BENCH_KEEP=1 keeps the last run's database (pt_bench) for measurements on real tables.
# DEDUPE_WINDOW_S=S deduplicates the three topics by event ID with an S-second window (give the
# events IDs, and some copies, with LOADGEN_ARGS: e.g. "... --dup-ratio 0.01 --no-id-ratio 0").
#
# CPU per event, from /proc, over each run (engine start .. everything merged, backlog; first
# event produced .. merged, live): PostgreSQL (the postmaster, every backend and background
# process, and the children it reaped meanwhile), the engine (all its threads, its whole life)
# and the Kafka broker (the JVM), each in microseconds of CPU per event.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/bench/lib.sh"
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

# cpu_ticks PID [CHILDREN]: utime + stime of PID in clock ticks; with CHILDREN=1 also the
# times of its children, live (read from /proc) and reaped (cutime + cstime).
cpu_ticks() {
    local pid=$1 kids=${2:-0}
    # cat, not awk on the files: a process that exits between the glob and the read makes
    # awk stop; cat goes on to the next file (and its failure must not end the script).
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v pid="$pid" -v kids="$kids" '
        {
            me = $1
            line = $0
            sub(/^.*\) /, "", line)
            split(line, f, " ")
            # after "pid (comm) ": f[2] ppid, f[12] utime, f[13] stime, f[14]/f[15] children
            if (me == pid) { t += f[12] + f[13]; if (kids) t += f[14] + f[15] }
            else if (kids && f[2] == pid) { t += f[12] + f[13] }
        }
        END { printf "%d\n", t }'
}
pg_pid() { head -n1 "$ROOT/var/pg/data/postmaster.pid"; }
kafka_pid() { cat "$ROOT/var/kafka/kafka.pid"; }
hz=$(getconf CLK_TCK)
# Every poll below is a psql connection, whose backend's CPU counts as PostgreSQL's: poll every
# half second rather than wait_for's 0.2 s (about 2 ms of PostgreSQL CPU a poll here).
poll() {
    local limit=$1 start=$SECONDS
    shift
    until "$@" >/dev/null 2>&1; do
        if [ $((SECONDS - start)) -ge "$limit" ]; then
            echo "ingest.sh: gave up waiting for: $*" >&2
            return 1
        fi
        sleep 0.5
    done
}
pgcpu=()
encpu=()
kcpu=()
for run in $(seq 1 "$RUNS"); do
    psql "$DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS pt_bench WITH (FORCE)" -c "CREATE DATABASE pt_bench" >/dev/null
    export DATABASE_URL="$base/pt_bench"
    prefix="bench-$$-$run-"
    dir=$(mktemp -d /tmp/pt-bench.XXXXXX)
    bench_topics "$prefix"
    dedupe_cfg=
    if [ -n "${DEDUPE_WINDOW_S:-}" ]; then
        dedupe_cfg="    dedupe = {"
        for t in $BENCH_TOPICS; do
            dedupe_cfg+=$'\n'"        [\"$prefix$t\"] = { window_s = $DEDUPE_WINDOW_S },"
        done
        dedupe_cfg+=$'\n    },'
    fi
    # live mode waits for the engine's "partitions assigned" (info) before producing
    bench_config "$dir/config.lua" "$prefix" "    http_port = 0,
    log_level = \"$([ "$MODE" = live ] && echo info || echo warn)\",
${EXTRA_CONFIG:-}
${dedupe_cfg}"
    (cd "$ROOT" && "$BIN" migrate --config "$dir/config.lua" >/dev/null)
    if [ "$MODE" = backlog ]; then
        # shellcheck disable=SC2086
        "$PT_LOADGEN" --topic-prefix "$prefix" --events "$EVENTS" --seed "$run" --truth "$dir/truth.tsv" --quiet $LOADGEN_ARGS
        pg0=$(cpu_ticks "$(pg_pid)" 1)
        k0=$(cpu_ticks "$(kafka_pid)")
        t0=$(now)
        (cd "$ROOT" && exec "$BIN" run --config "$dir/config.lua") 2>"$dir/engine.log" &
        pid=$!
    else
        (cd "$ROOT" && exec "$BIN" run --config "$dir/config.lua") 2>"$dir/engine.log" &
        pid=$!
        ready() { grep -q "partitions assigned" "$dir/engine.log"; }
        wait_for 60 ready
        pg0=$(cpu_ticks "$(pg_pid)" 1)
        k0=$(cpu_ticks "$(kafka_pid)")
        t0=$(now)
        # shellcheck disable=SC2086
        "$PT_LOADGEN" --topic-prefix "$prefix" --events "$EVENTS" --seed "$run" --truth "$dir/truth.tsv" --quiet $LOADGEN_ARGS
    fi
    total=$(truth_total "$dir/truth.tsv")
    exact() { [ "$(db_total)" = "$total" ]; }
    poll 1800 exact
    t1=$(now)
    # Co-occurrence pairs are exact in every answer once flushed (pending ones are added), but
    # the engine merges them into pattern_cooccurrence_merged afterwards: the time until none is
    # pending is what sustained load needs.
    merged() { [ "$(psql "$DATABASE_URL" -XtAc "SELECT (SELECT count(*) FROM pattern_lists_pending) + (SELECT count(*) FROM agent_lists_pending)")" = 0 ]; }
    poll 1800 merged
    t2=$(now)
    pg1=$(cpu_ticks "$(pg_pid)" 1)
    k1=$(cpu_ticks "$(kafka_pid)")
    en1=$(cpu_ticks "$pid")
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"
    wait "$pid"
    check_truth "$dir/truth.tsv" "$prefix" >/dev/null
    rate=$(awk -v n="$EVENTS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    mrate=$(awk -v n="$EVENTS" -v a="$t0" -v b="$t2" 'BEGIN { printf "%.0f", n / (b - a) }')
    per_event() { awk -v t="$1" -v hz="$hz" -v n="$EVENTS" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }'; }
    pgcpu+=("$(per_event $((pg1 - pg0)))")
    encpu+=("$(per_event "$en1")")
    kcpu+=("$(per_event $((k1 - k0)))")
    echo "run $run: CPU per event: PostgreSQL ${pgcpu[-1]} us, engine ${encpu[-1]} us, Kafka ${kcpu[-1]} us" >&2
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
if [ -z "${PT_BENCH_KEEP:-}" ]; then
    psql "$DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS pt_bench WITH (FORCE)" >/dev/null
fi
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "mode=$MODE events=$EVENTS runs=$RUNS median_events_per_s=$(median "${results[@]}") median_merged_events_per_s=$(median "${mresults[@]}") median_peak_rss_mb=$(( $(median "${rss[@]}") / 1024 )) median_cpu_us_per_event: postgres=$(median "${pgcpu[@]}") engine=$(median "${encpu[@]}") kafka=$(median "${kcpu[@]}")"
