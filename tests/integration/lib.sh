# shellcheck shell=bash
# Helpers for the integration tests (tests/integration/*.sh), sourced, never run. They need
# DATABASE_URL (and the tests KAFKA_BOOTSTRAP_SERVERS), as `eval "$(scripts/services up)"`
# exports them. Every helper returns non-zero on failure rather than exiting, so a test can
# run under `set -euo pipefail` or check results itself.
#
#   wait_for SECONDS CMD...       run CMD every 0.2 s until it succeeds; 1 after SECONDS
#   check_truth TRUTH [PREFIX]    compare a pt-loadgen truth file with PostgreSQL, exactly
#   truth_total TRUTH             the sum of the truth's pattern counts
#   db_total                      sum(usage_count) of pattern_lineage_nodes
#   reset_db                      truncate every table the engine writes
#   pt_psql ARGS...               psql on $DATABASE_URL: no psqlrc, stop on error, UTF-8
#   free_port                     a free TCP port on 127.0.0.1
#
# PT_LOADGEN is the load generator (default build/bench/pt-loadgen of this tree).

PT_IT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
PT_IT_ROOT=$(cd -- "$PT_IT_DIR/../.." && pwd -P)
PT_LOADGEN=${PT_LOADGEN:-$PT_IT_ROOT/build/bench/pt-loadgen}

pt_psql() {
    if [ -z "${DATABASE_URL:-}" ]; then
        echo "pt_psql: DATABASE_URL is not set" >&2
        return 2
    fi
    PGCLIENTENCODING=UTF8 psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 "$@"
}

# Microseconds since the epoch, without a fork (EPOCHREALTIME's separator follows the locale).
_pt_now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    printf '%s\n' "$((10#$t))"
}

# wait_for SECONDS CMD...: runs CMD (a command or function, with its arguments) every 0.2 s
# until it exits 0, then returns 0. After SECONDS (may have a fraction) it prints what it
# waited for and CMD's last output to stderr and returns 1. CMD runs in a subshell with its
# output captured: what it prints is shown only on time-out, and variables it sets are lost.
wait_for() {
    if [ $# -lt 2 ] || ! [[ $1 =~ ^([0-9]+)(\.([0-9]{1,6}))?$ ]]; then
        echo "usage: wait_for SECONDS CMD..." >&2
        return 2
    fi
    local frac=${BASH_REMATCH[3]:-0}
    while [ ${#frac} -lt 6 ]; do frac+=0; done
    local secs=$1 limit=$((10#${BASH_REMATCH[1]} * 1000000 + 10#$frac)) start out
    shift
    start=$(_pt_now_us)
    while true; do
        if out=$("$@" 2>&1); then
            return 0
        fi
        if [ $(($(_pt_now_us) - start)) -ge "$limit" ]; then
            printf 'wait_for: gave up after %ss waiting for: %s\n' "$secs" "$*" >&2
            if [ -n "$out" ]; then
                printf '%s\n' "$out" | tail -n 5 | sed 's/^/wait_for:   last output: /' >&2
            fi
            return 1
        fi
        sleep 0.2
    done
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# truth_total TRUTH: prints the sum of the P counts (= the uses a correct engine counts).
truth_total() {
    awk -F'\t' '$1 == "P" { s += $3 } END { printf "%.0f\n", s }' "$1"
}

# db_total: prints sum(usage_count) over pattern_lineage_nodes.
db_total() {
    pt_psql -At -c 'SELECT coalesce(sum(usage_count), 0) FROM pattern_lineage_nodes'
}

# slow_flushes SECONDS: from now on every flush spends at least SECONDS in PostgreSQL (a
# statement trigger on the offsets each flush stores), e.g. to aim at a running flush.
slow_flushes() {
    pt_psql -c "CREATE FUNCTION it_slow_flush() RETURNS trigger LANGUAGE plpgsql AS
                \$\$ BEGIN PERFORM pg_sleep($1); RETURN NULL; END \$\$;
                CREATE TRIGGER it_slow_flush BEFORE UPDATE ON usage_consumer_offsets
                   FOR EACH STATEMENT EXECUTE FUNCTION it_slow_flush();" >/dev/null
}

# reset_db: empties every table the engine writes, its stored Kafka offsets included.
reset_db() {
    pt_psql -c 'TRUNCATE pattern_lineage_nodes, pattern_agents, pattern_usage_hourly,
                         pattern_usage_daily, pattern_lists, pattern_lists_pending, agent_lists,
                         agent_lists_pending, pattern_cooccurrence_top, agent_usage_totals,
                         usage_hourly_totals, usage_daily_totals, agent_type_usage,
                         usage_consumer_offsets, usage_topic_stats, usage_dead_letters,
                         usage_event_claims
                RESTART IDENTITY'
}

# check_truth TRUTH [PREFIX]: compares the truth file of pt-loadgen with PostgreSQL, exactly:
# pattern_lineage_nodes (usage_count, first_used_at, last_used_at; the sorted distinct agents
# from pattern_agents), pattern_agent_usage and agent_pattern_usage (the partner lists both
# ways, folded and pending), pattern_usage_hourly, the totals, and, for topics that
# start with PREFIX, usage_topic_stats (duplicates included: 0 for a topic without a U record)
# and the usage_dead_letters rows per (topic, reason).
# The pattern tables are compared whole: run it on a database reset before the scenario.
# Prints "truth: exact (N patterns, M pairs, K hours)" and returns 0, or prints the first 10
# mismatching rows of each table and returns 1 (2 for a bad truth file or a psql failure).
check_truth() {
    if [ $# -lt 1 ] || [ $# -gt 2 ]; then
        echo "usage: check_truth TRUTHFILE [TOPIC_PREFIX]" >&2
        return 2
    fi
    local truth=$1 prefix=${2:-} dir out rc=0 line
    if [ ! -r "$truth" ]; then
        echo "check_truth: cannot read $truth" >&2
        return 2
    fi
    dir=$(mktemp -d "${TMPDIR:-/tmp}/pt-truth.XXXXXX") || return 2
    # One COPY text file per record type (fields are COPY-escaped, so tabs only separate).
    if ! awk -F'\t' -v d="$dir" '
            BEGIN {
                n["P"] = 5; n["A"] = 6; n["H"] = 4; n["C"] = 5; n["T"] = 6; n["D"] = 4; n["U"] = 3
            }
            $0 == "" { next }
            !($1 in n) || NF != n[$1] {
                printf "check_truth: line %d is not a truth record: %s\n", NR,
                    substr($0, 1, 80) > "/dev/stderr"
                bad = 1
                exit
            }
            { print substr($0, 3) > (d "/" $1 ".tsv") }
            END { exit bad }' "$truth"; then
        rm -rf -- "$dir"
        return 2
    fi
    {
        local k
        for k in P A H C T D U; do
            : >>"$dir/$k.tsv"
            printf "\\\\copy truth_%s FROM '%s'\n" "${k,,}" "$dir/$k.tsv"
        done
    } >"$dir/load.sql"
    printf "\\\\copy lent FROM '%s'\n" "$dir/lists.tsv" >"$dir/dump.sql"
    out=$(pt_psql -At -v loadscript="$dir/load.sql" -v prefix="$prefix" \
        -v dumpbin="${PT_BIN:-$PT_IT_ROOT/build/patterntrack}" -v dumpfile="$dir/lists.tsv" \
        -v dumpscript="$dir/dump.sql" \
        -f "$PT_IT_DIR/check_truth.sql" 2>&1) || rc=2
    rm -rf -- "$dir"
    if [ "$rc" -ne 0 ]; then
        printf 'check_truth: psql failed:\n%s\n' "$out" >&2
        return 2
    fi
    local result=
    while IFS= read -r line; do
        case $line in
            RESULT\|*) result=$line ;;
            *) printf '%s\n' "$line" ;;
        esac
    done <<<"$out"
    local mism patterns pairs hours cooc
    IFS='|' read -r _ mism patterns pairs hours cooc <<<"$result"
    if [ -z "$result" ] || [ "$mism" != 0 ]; then
        printf 'truth: MISMATCH (%s rows differ; truth has %s patterns, %s pairs, %s hours)\n' \
            "${mism:-?}" "${patterns:-?}" "${pairs:-?}" "${hours:-?}"
        return 1
    fi
    printf 'truth: exact (%s patterns, %s pairs, %s hours%s)\n' "$patterns" "$pairs" "$hours" \
        "$([ "${cooc:-0}" != 0 ] && echo ", $cooc co-occurrence pairs")"
}
