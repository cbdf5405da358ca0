#!/usr/bin/env bash
# The rule sandbox: a runaway rule (endless loop, even one that catches its own errors) and a
# memory bomb become dead letters with reasons "rule timeout" and "rule memory"; the engine
# keeps running and counts the next good event. Rules cannot reach io, os.execute or files.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    kafka_enable_consumer = false, rule_instruction_budget = 200000, lua_memory_mb = 32,' it_setup rule_limits
root=$IT_DIR/root
mkdir -p "$root/rules"
cp -r "$PT_IT_ROOT/lua" "$PT_IT_ROOT/sql" "$root/"
cat >"$root/rules/limits.lua" <<'LUA'
return function(event)
    if event.loop then
        while true do pcall(function() while true do end end) end
    elseif event.bomb then
        local t = {}
        for i = 1, 1e9 do t[i] = string.rep("x", 1048576 + i) end
    elseif event.escape then
        return "x", { tostring(io), tostring(os.execute), tostring(dofile), tostring(require and pcall(require, "io")) }
    end
    return event.agent, event.patterns
end
LUA
sed -i 's/^    topics = {/    topics = { ["limits"] = "rules\/limits.lua",/' "$IT_CONFIG"
sed -i '/-agent-/d' "$IT_CONFIG"
port=$(free_port)
engine_start PATTERNTRACK_ROOT="$root" HTTP_PORT="$port"
up() { curl -sf "http://127.0.0.1:$port/health" >/dev/null; }
wait_for 30 up || it_fail "HTTP did not come up"
post() { curl -s -X POST -H 'Content-Type: application/x-ndjson' --data-binary "$1" "http://127.0.0.1:$port/api/patterns/usage/events?topic=limits"; }

r=$(post $'{"loop":true}\n{"bomb":true}\n{"agent":"a1","patterns":["good-1"]}')
echo "$r" | grep -q '"dead_lettered":2' || it_fail "runaway and bomb not dead-lettered: $r"
echo "$r" | grep -q '"patterns_counted":1' || it_fail "the good event was not counted: $r"
reasons=$(pt_psql -tAc "SELECT string_agg(reason, ',' ORDER BY reason) FROM usage_dead_letters")
[ "$reasons" = "rule memory,rule timeout" ] || it_fail "dead letter reasons: $reasons"
kill -0 "$IT_PID" || it_fail "the engine died"
# the sandbox hides io, os.execute, dofile and require of anything outside lua/lib
r=$(post '{"escape":true}')
pt_psql -tAc "SELECT pattern_id FROM pattern_agents WHERE agent_name = 'x' ORDER BY 1" >"$IT_DIR/escape"
# io, os.execute and dofile are nil; require("io") fails
[ "$(tr '\n' ' ' <"$IT_DIR/escape")" = "false nil " ] || it_fail "sandbox leaks: $(cat "$IT_DIR/escape")"
r=$(post '{"agent":"a2","patterns":["good-2"]}')
echo "$r" | grep -q '"patterns_counted":1' || it_fail "no recovery after the limits: $r"
good=$(pt_psql -tAc "SELECT sum(usage_count) FROM pattern_agent_usage WHERE agent_name IN ('a1', 'a2')")
[ "$good" = 2 ] || it_fail "good events counted $good times, want 2"
# An answer larger than lua_memory_mb (300,000 pending partner lists for /cooccurrence/top to
# read: more than 32 MB as Lua values) is a 503 for that request; the engine stays up (it used
# to abort on Lua's panic) and answers the next request.
pt_psql -qc "INSERT INTO pattern_lists_pending (flush_id, pattern_id, n_agents, agents, n_partners, n_low, partners)
             SELECT 1, 'big-' || g, 0, NULL, 1, 0, decode('02' || repeat('ab', 40), 'hex')
               FROM generate_series(1, 300000) g"
code=$(curl -s -o "$IT_DIR/big" -w '%{http_code}' "http://127.0.0.1:$port/api/patterns/usage/cooccurrence/top?limit=5")
[ "$code" = 503 ] && grep -q lua_memory_mb "$IT_DIR/big" ||
    it_fail "an answer over lua_memory_mb: status $code, $(head -c 300 "$IT_DIR/big")"
kill -0 "$IT_PID" || it_fail "the engine died on an answer over lua_memory_mb"
pt_psql -qc "DELETE FROM pattern_lists_pending WHERE pattern_id LIKE 'big-%'"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/patterns/usage/cooccurrence/top?limit=5")
[ "$code" = 200 ] || it_fail "no answer after the oversized one: status $code"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_rule_limits: ok (timeout and memory bomb dead-lettered, sandbox closed, an answer over lua_memory_mb refused, engine alive)"
