#!/usr/bin/env bash
# The engine under valgrind memcheck through one life: consume from Kafka, ingest over HTTP,
# answer every kind of route (and a failing one), reload, then SIGTERM. Memcheck must report no
# error (invalid reads/writes, uninitialised jumps) and no definite or indirect leak; the counts
# must still be exact. Run with the unsanitized build (PT_PLAIN_BIN): valgrind and ASan exclude
# each other.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
need_plain_bin
IT_EXTRA_CONFIG='    shutdown_timeout_ms = 60000,' it_setup valgrind
command -v valgrind >/dev/null || it_fail "valgrind is not installed (scripts/deps installs it)"
port=$(free_port)
vlog=$IT_DIR/valgrind.log

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 3000 --rate 1000 --bad-ratio 0.05 --seed 3 \
    --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!
(cd "$PT_IT_ROOT" && exec env -u KAFKA_GROUP_ID HTTP_PORT="$port" valgrind \
    --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 --log-file="$vlog" --num-callers=30 \
    "$PT_BIN" run --config "$IT_CONFIG") >>"$IT_DIR/engine.log" 2>&1 &
IT_PID=$!
serving() { curl -sf -m 5 -o /dev/null "http://127.0.0.1:$port/health"; }
wait_for 120 serving || it_fail "the engine under valgrind never served /health"

api() { # api METHOD PATH [BODY]: prints the status code
    curl -s -m 30 -o /dev/null -w '%{http_code}' -X "$1" ${3:+-H 'Content-Type: application/json' --data "$3"} \
        "http://127.0.0.1:$port$2"
}
code=$(api POST "/api/patterns/usage/events?topic=${IT_PREFIX}agent-actions" \
    '[{"agent_name":"vg","pattern_ids":["vg-1"]},{"agent_name":"vg","pattern_ids":["vg-1","vg-2"]},"bad"]')
[ "$code" = 200 ] || it_fail "HTTP ingest answered $code"
code=$(api PUT /api/patterns/vg-1 '{"name":"one","pattern_type":"code"}')
[ "$code" = 200 ] || [ "$code" = 201 ] || it_fail "PUT /api/patterns/vg-1 answered $code"
for path in /api/patterns/usage/summary /api/patterns/usage/top /api/patterns/usage/vg-1 \
    /api/patterns/usage/unused /api/patterns/usage/stale /api/patterns/usage/by-agent/vg \
    /api/patterns/usage/unknown /api/patterns/usage/trends "/api/patterns/usage/vg-1/timeseries?bucket=day" \
    /api/patterns/usage/heatmap /api/patterns/usage/vg-1/heatmap /api/patterns/usage/vg-1/cooccurring \
    /api/patterns/usage/cooccurrence/top /api/agents /api/agents/vg/profile \
    /api/patterns/usage/lifecycle /metrics /openapi.json /dashboard/; do
    code=$(api GET "$path")
    [ "$code" = 200 ] || it_fail "GET $path answered $code"
done
for bad in "/api/patterns/usage/top?limit=0" /api/patterns/usage/no-such-pattern /nowhere; do
    code=$(api GET "$bad")
    case $code in 404 | 422) ;; *) it_fail "GET $bad answered $code" ;; esac
done
code=$(api POST /admin/reload)
[ "$code" = 200 ] || it_fail "POST /admin/reload answered $code"

wait "$producer" || it_fail "the producer failed"
# The Kafka events plus the two HTTP events' three uses.
total=$(($(truth_total "$IT_DIR/truth.tsv") + 3))
wait_total "$total" 120 || it_fail "totals did not reach $total (now $(db_total))"
rc=0
engine_stop || rc=$?
# The summary proves memcheck ran to the end (a clean run with --quiet would print nothing).
if [ "$rc" -ne 0 ] || ! grep -q 'ERROR SUMMARY: 0 errors' "$vlog"; then
    cat "$vlog" >&2
    it_fail "valgrind: exit status $rc (99 = memcheck found errors or leaks)"
fi
echo "it_valgrind: ok (memcheck: no errors, no definite or indirect leak; $total uses exact)"
grep -E 'definitely lost|indirectly lost|possibly lost|still reachable|total heap usage' "$vlog" | sed 's/^==[0-9]*== */  /' 
