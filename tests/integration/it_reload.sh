#!/usr/bin/env bash
# Hot reload under load: while events stream in, the engine reloads again and again (SIGHUP,
# POST /admin/reload, rule files changed on disk), once with a broken rule (refused, the running
# rules stay), and while slow HTTP requests are in flight (they all finish). Afterwards every
# total is exact: no event lost, none counted twice, none seen by a half-loaded rule set.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
it_setup reload
rss_watch
root=$IT_DIR/root
mkdir -p "$root"
cp -r "$PT_IT_ROOT/lua" "$PT_IT_ROOT/rules" "$PT_IT_ROOT/sql" "$root/"
cat >"$root/lua/routes/zz_slow.lua" <<'LUA'
return { { method = "GET", path = "/test/slow", handler = function()
    return db.query("SELECT pg_sleep(0.5)::text AS slept, 1 AS one")[1]
end } }
LUA
port=$(free_port)

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 120000 --rate 4000 --seed 31 \
    --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!
engine_start PATTERNTRACK_ROOT="$root" HTTP_PORT="$port"
up() { curl -sf "http://127.0.0.1:$port/health" >/dev/null; }
wait_for 30 up || it_fail "HTTP did not come up"
url="http://127.0.0.1:$port"

reloads=0
loaded() { # $1 = reloads_ok expected at least
    curl -sf "$url/health" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["loaded"]["reloads_ok"] >= int(sys.argv[1]) else 1)' "$1"
}
while kill -0 "$producer" 2>/dev/null && [ "$reloads" -lt 30 ]; do
    case $((reloads % 3)) in
    0) code=$(curl -s -o "$IT_DIR/r.json" -w '%{http_code}' -X POST "$url/admin/reload")
       [ "$code" = 200 ] || it_fail "POST /admin/reload answered $code: $(cat "$IT_DIR/r.json")" ;;
    1) kill -HUP "$IT_PID" ;;
    2) touch "$root/rules/agent-actions.lua" ;;
    esac
    reloads=$((reloads + 1))
    wait_for 20 loaded "$reloads" || it_fail "reload $reloads did not happen"
done
[ "$reloads" -ge 10 ] || it_fail "only $reloads reloads while events were produced"

# A broken rule is refused and the running one keeps counting.
cp "$root/rules/agent-actions.lua" "$IT_DIR/good.lua"
echo 'return function(event) return ' >"$root/rules/agent-actions.lua"
code=$(curl -s -o "$IT_DIR/r.json" -w '%{http_code}' -X POST "$url/admin/reload")
[ "$code" = 409 ] || it_fail "a broken rule answered $code, not 409"
grep -q 'agent-actions.lua' "$IT_DIR/r.json" || it_fail "the error does not name the file: $(cat "$IT_DIR/r.json")"
curl -sf "$url/health" | grep -q '"last_ok":false' || it_fail "/health does not show the failed reload"
cp "$IT_DIR/good.lua" "$root/rules/agent-actions.lua"
code=$(curl -s -o "$IT_DIR/r.json" -w '%{http_code}' -X POST "$url/admin/reload")
[ "$code" = 200 ] || it_fail "reload after the fix answered $code"

# Routes reloaded while requests are in flight: every request still gets its answer.
pids=()
for i in $(seq 1 12); do
    curl -s -o "$IT_DIR/slow.$i" -w '%{http_code}' "$url/test/slow" >"$IT_DIR/slow.$i.code" &
    pids+=($!)
done
for i in 1 2 3; do
    curl -s -o /dev/null -X POST "$url/admin/reload"
done
for p in "${pids[@]}"; do wait "$p"; done
for i in $(seq 1 12); do
    [ "$(cat "$IT_DIR/slow.$i.code")" = 200 ] || it_fail "slow request $i got $(cat "$IT_DIR/slow.$i.code") across a reload"
done

wait "$producer" || it_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth.tsv")
wait_total "$total" 120 || it_fail "totals did not reach $total (now $(db_total))"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ after $reloads reloads"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_reload: ok (120000 events; $reloads reloads under load, a broken rule refused, 12 slow" \
    "requests across 3 reloads answered; $total uses exact; peak RSS $(rss_peak_mb) MB, $(build_kind) build)"
