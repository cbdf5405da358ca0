#!/usr/bin/env bash
# Event-ID deduplication (the dedupe option) counts an event once whatever its producer did:
#   1. one engine, a load where a fifth of the good events are produced twice (the copy near the
#      original or far from it, under the same key or another one, so on another partition),
#      killed with SIGKILL while originals are counted and their far copies are still to come:
#      every total equals the ground truth of the distinct events, the copies are counted in
#      usage_topic_stats.duplicates, the metric and /health, and events without an ID count
#      every time;
#   2. two engines of one group on a load like it: copies of one event reach both engines;
#   3. a short window: the same events produced again after their claims expired count again,
#      and the expired claims are deleted.
# Dedupe off (every other test) counts as before.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    batch_max_events = 3000,' it_setup dedupe

# use_dedupe WINDOW_S [CONFIG]: every topic of this test's prefix deduplicated.
use_dedupe() {
    local cfg=${2:-$IT_CONFIG} t lines=""
    for t in agent-manifest-injections agent-actions agent-routing-decisions; do
        lines+="        [\"$IT_PREFIX$t\"] = { window_s = $1 },"$'\n'
    done
    awk -v d="    dedupe = {"$'\n'"$lines    }," '$0 == "}" && !done { print d; done = 1 } { print }' \
        "$cfg" >"$cfg.new" && mv "$cfg.new" "$cfg"
}
# new_topics: a fresh prefix, group and topics for the next phase (the database is reset).
new_topics() {
    local old=$IT_PREFIX t
    IT_PREFIX="${old%-}x-"
    IT_GROUP="g-$IT_PREFIX"
    sed -i "s/$old/$IT_PREFIX/g; s/g-g-/g-/g" "$IT_CONFIG"
    for t in agent-manifest-injections agent-actions agent-routing-decisions; do
        "$PT_IT_ROOT/scripts/services" topic "$IT_PREFIX$t" >/dev/null
    done
}
dups_db() { pt_psql -At -c "SELECT coalesce(sum(duplicates), 0) FROM usage_topic_stats"; }
truth_dups() { awk -F'\t' '$1 == "U" { s += $3 } END { printf "%.0f\n", s }' "$1"; }
metric_sum() { # metric_sum PORT NAME: the sum of a metric's series
    curl -sf -m 5 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 ~ "^" n "[{ ]" || $1 == n { s += $NF } END { printf "%.0f\n", s }'
}

# ---- 1. one engine, kill -9 between copies ----
use_dedupe 3600
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --pairs-truth 32 --events 60000 --rate 6000 \
    --dup-ratio 0.2 --bad-ratio 0.01 --seed 41 --truth "$IT_DIR/truth1.tsv" --quiet &
producer=$!
rss_watch
engine_start
progressed() { [ "$(db_total)" -gt "$1" ]; }
claims() { pt_psql -At -c "SELECT count(*) FROM usage_event_claims"; }
# Killed once copies were counted as such (so their originals' counts had committed) while most
# far copies are still to come.
has_claims() { [ "$(claims)" -gt 1000 ] && [ "$(dups_db)" -gt 0 ]; }
wait_for 60 has_claims || it_fail "no events were claimed and counted"
engine_kill9
# A flush the killed engine had sent may still commit: its backend runs the statement to the
# end before it notices the client is gone. Count from when no backend of it is left.
alone() { [ "$(pt_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'")" = 0 ]; }
wait_for 30 alone || it_fail "the killed engine's connections did not go away"
dups_at_kill=$(dups_db)
claims_at_kill=$(claims)
port=$(free_port)
engine_start HTTP_PORT="$port"
wait "$producer" || it_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth1.tsv")
want_dups=$(truth_dups "$IT_DIR/truth1.tsv")
[ "$want_dups" -gt 1000 ] || it_fail "the load holds only $want_dups copies"
wait_total "$total" 120 || it_fail "totals did not reach $total (now $(db_total))"
dups_reached() { [ "$(dups_db)" = "$want_dups" ]; }
wait_for 30 dups_reached || it_fail "duplicates $(dups_db), the load made $want_dups"
check_truth "$IT_DIR/truth1.tsv" "$IT_PREFIX" || it_fail "totals differ from the distinct events"
# Copies met their originals' claims across the kill: the restarted engine found duplicates of
# events claimed before it (far copies come about half the load later).
after_kill=$((want_dups - dups_at_kill))
[ "$after_kill" -gt 0 ] && [ "$dups_at_kill" -gt 0 ] ||
    it_fail "no copy was recognised after the kill ($dups_at_kill before, $claims_at_kill claims)"
# (the engine counts a batch's copies when it hears its COMMIT succeed, just after the database
# shows them)
metric_is() { [ "$(metric_sum "$port" patterntrack_duplicate_events_total)" = "$1" ]; }
wait_for 10 metric_is "$after_kill" ||
    it_fail "patterntrack_duplicate_events_total says $(metric_sum "$port" patterntrack_duplicate_events_total), the restarted engine committed $after_kill"
h=$(curl -sf -m 5 "http://127.0.0.1:$port/health" |
    python3 -c 'import json, sys; d = json.load(sys.stdin)["ingest"]["dedupe"]; print(len(d), sum(t["duplicates"] for t in d), min(t["window_s"] for t in d))')
[ "$h" = "3 $after_kill 3600" ] || it_fail "/health ingest.dedupe says '$h', want '3 $after_kill 3600'"
engine_stop || it_fail "SIGTERM exit status $?"
phase1="$total uses of $(wc -l <"$IT_DIR/truth1.tsv") truth lines exact, $want_dups copies not counted ($dups_at_kill before the kill)"

# ---- 2. two engines of one group ----
reset_db
new_topics
IT_EXTRA_CONFIG= # the config file keeps what phase 1 wrote
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --pairs-truth 32 --events 60000 --rate 6000 \
    --dup-ratio 0.2 --seed 42 --truth "$IT_DIR/truth2.tsv" --quiet &
producer=$!
declare -A PIDS=()
inst_start() {
    sed "s/\"$IT_GROUP-1\"/\"$IT_GROUP-$1\"/" "$IT_CONFIG" >"$IT_DIR/config-$1.lua"
    (cd "$PT_IT_ROOT" && exec env -u KAFKA_GROUP_ID -u HTTP_PORT "$PT_BIN" run \
        --config "$IT_DIR/config-$1.lua") >>"$IT_DIR/engine-$1.log" 2>&1 &
    PIDS[$1]=$!
}
stop_all() {
    local k
    for k in "${!PIDS[@]}"; do kill -9 "${PIDS[$k]}" 2>/dev/null || true; done
    it_cleanup
}
trap stop_all EXIT
assigned() { grep -q 'partitions assigned' "$IT_DIR/engine-$1.log"; }
inst_start 1
inst_start 2
wait_for 60 assigned 1 || it_fail "engine 1 never got partitions"
wait_for 60 assigned 2 || it_fail "engine 2 never got partitions"
wait "$producer" || it_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth2.tsv")
want_dups=$(truth_dups "$IT_DIR/truth2.tsv")
wait_total "$total" 120 || it_fail "two engines: totals did not reach $total (now $(db_total))"
wait_for 30 dups_reached || it_fail "two engines: duplicates $(dups_db), the load made $want_dups"
check_truth "$IT_DIR/truth2.tsv" "$IT_PREFIX" || it_fail "two engines: totals differ"
for k in 1 2; do
    kill -TERM "${PIDS[$k]}"
    wait "${PIDS[$k]}" || it_fail "engine $k: SIGTERM exit status $?"
    unset "PIDS[$k]"
done
phase2="$total uses exact, $want_dups copies not counted"

# ---- 3. the window expires ----
reset_db
new_topics
sed -i 's/window_s = 3600/window_s = 4/' "$IT_CONFIG"
engine_start
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 3000 --dup-ratio 0.1 --seed 43 \
    --truth "$IT_DIR/truth3.tsv" --quiet
total=$(truth_total "$IT_DIR/truth3.tsv")
want_dups=$(truth_dups "$IT_DIR/truth3.tsv")
wait_total "$total" 60 || it_fail "window: totals did not reach $total (now $(db_total))"
wait_for 30 dups_reached || it_fail "window: duplicates $(dups_db), the load made $want_dups"
live_claims() { pt_psql -At -c "SELECT count(*) FROM usage_event_claims WHERE expires_at > now()"; }
expired() { [ "$(live_claims)" = 0 ]; }
wait_for 30 expired || it_fail "claims of a 4 s window still live"
# The same events again (same seed: the same payloads and IDs), now outside their window: each
# counts again, and the copies within this second run are duplicates again.
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 3000 --dup-ratio 0.1 --seed 43 --quiet
wait_total $((2 * total)) 60 || it_fail "after the window: totals did not reach $((2 * total)) (now $(db_total))"
want_dups=$((2 * want_dups))
wait_for 30 dups_reached || it_fail "after the window: duplicates $(dups_db), want $want_dups"
no_claims() { [ "$(claims)" = 0 ]; }
wait_for 60 no_claims || it_fail "expired claims were not deleted ($(claims) left)"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_dedupe: ok (one engine, kill -9: $phase1; two engines: $phase2; a 4 s window: $total" \
    "uses counted twice after it expired, its claims deleted; peak RSS $(rss_peak_mb) MB," \
    "$(build_kind) build)"
