# shellcheck shell=bash
# What the benchmarks share (sourced after tests/integration/lib.sh; ROOT is the repository):
#   bench_topics PREFIX         creates the three seed topics under PREFIX on the local broker
#   bench_config FILE PREFIX [LINES]
#                               writes an engine config for those topics, group g-PREFIX, plus
#                               LINES (more fields of the returned table)
#   time_ms SETUP STATEMENT     (the candidate benchmarks, which define q and RUNS) see below
BENCH_TOPICS="agent-manifest-injections agent-actions agent-routing-decisions"

bench_topics() {
    local t
    for t in $BENCH_TOPICS; do
        "$ROOT/scripts/services" topic "$1$t" >/dev/null
    done
}

bench_config() {
    local file=$1 prefix=$2 t
    {
        echo "return {"
        echo "    topics = {"
        for t in $BENCH_TOPICS; do
            echo "        [\"$prefix$t\"] = \"rules/$t.lua\","
        done
        echo "    },"
        echo "    kafka_group_id = \"g-$prefix\","
        [ -n "${3:-}" ] && printf '%s\n' "$3"
        echo "}"
    } >"$file"
}

# time_ms SETUP STATEMENT: ms of STATEMENT (after SETUP, untimed), median of RUNS, with
# synchronous_commit off (a flush of Kafka events commits that way; its WAL flush is not CPU).
time_ms() {
    local setup=$1 stmt=$2 i out ms all=()
    for i in $(seq 1 "$RUNS"); do
        q <<<"$setup;" >/dev/null || return 1
        out=$(q -c "SET synchronous_commit = off" -c '\timing on' -c "$stmt" 2>&1) || {
            echo "failed: $stmt: $out" >&2
            return 1
        }
        ms=$(printf '%s\n' "$out" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n1)
        all+=("$ms")
    done
    printf '%s\n' "${all[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
