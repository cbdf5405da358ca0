#!/usr/bin/env bash
# The HTTP query pool keeps room for light queries: while more whole-table queries
# (db.query_heavy) wait than half the pool can run, a one-row query (db.query) is still answered
# at once, and every heavy one is answered in turn.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    kafka_enable_consumer = false, pg_pool_size = 4,' it_setup pool_lanes
root=$IT_DIR/root
mkdir -p "$root"
cp -r "$PT_IT_ROOT/lua" "$PT_IT_ROOT/rules" "$PT_IT_ROOT/sql" "$root/"
cat >"$root/lua/routes/zz_lanes.lua" <<'LUA'
return {
    { method = "GET", path = "/test/heavy", handler = function()
        return db.query_heavy("SELECT pg_sleep(3)::text AS slept")[1] end },
    { method = "GET", path = "/test/light", handler = function()
        return db.query("SELECT 1 AS one")[1] end },
}
LUA
port=$(free_port)
engine_start PATTERNTRACK_ROOT="$root" HTTP_PORT="$port"
url="http://127.0.0.1:$port"
light() { curl -sf -m 1.5 "$url/test/light" | grep -q '"one":1'; }
wait_for 30 light || it_fail "the light route does not answer"

# 6 heavy requests: 2 run (half of 4 connections), 4 queue; each takes 3 s.
pids=()
for i in 1 2 3 4 5 6; do
    curl -s -m 30 -o "$IT_DIR/heavy.$i" -w '%{http_code}' "$url/test/heavy" >"$IT_DIR/heavy.$i.code" &
    pids+=($!)
done
heavy_active() {
    pt_psql -At -c "SELECT count(*) FROM pg_stat_activity
                    WHERE query LIKE 'SELECT pg_sleep(3)%' AND state = 'active'"
}
started() { [ "$(heavy_active)" -ge 2 ]; }
wait_for 10 started || it_fail "two heavy queries never ran at once"
# Within the first 3 s the first heavy queries still run and the others wait: light requests
# must be answered within 1.5 s each, and never more than 2 heavy queries may run.
for i in 1 2 3 4; do
    light || it_fail "light request $i was not answered within 1.5 s while heavy queries waited"
    n=$(heavy_active)
    [ "$n" -le 2 ] || it_fail "$n heavy queries ran at once (at most half the pool, 2, may)"
done
for p in "${pids[@]}"; do wait "$p"; done
for i in 1 2 3 4 5 6; do
    [ "$(cat "$IT_DIR/heavy.$i.code")" = 200 ] || it_fail "heavy request $i got $(cat "$IT_DIR/heavy.$i.code")"
done
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_pool_lanes: ok (6 heavy queries, at most 2 at once; 4 light queries answered meanwhile)"
