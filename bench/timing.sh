# shellcheck shell=bash
# Timing one SQL statement for the candidate benchmarks (bench/*_candidates.sh), sourced after
# they define q (psql on their scratch database) and RUNS.
#
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
