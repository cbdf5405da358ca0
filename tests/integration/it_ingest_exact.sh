#!/usr/bin/env bash
# A seeded mix of events in every shape the default rules read, with bad events among them, is
# counted exactly: per pattern, per (pattern, agent), per hour, per topic, and every dead letter
# is stored with its reason. Then SIGTERM stops the engine cleanly (exit 0).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
it_setup ingest_exact
rss_watch

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 60000 --bad-ratio 0.03 --seed 7 \
    --truth "$IT_DIR/truth.tsv" --quiet
total=$(truth_total "$IT_DIR/truth.tsv")
t0=$EPOCHREALTIME
engine_start
wait_total "$total" 120 || it_fail "totals did not reach $total (now $(db_total))"
took=$(secs_since "$t0")
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ from the ground truth"
# a dead letter keeps its payload (truncated) and position
n_dl=$(pt_psql -tAc "SELECT count(*) FROM usage_dead_letters WHERE payload IS NOT NULL AND kafka_offset >= 0 AND partition >= 0")
[ "$n_dl" -gt 0 ] || it_fail "no dead letters stored"
big=$(pt_psql -tAc "SELECT count(*) FROM usage_dead_letters WHERE reason = 'too large' AND truncated AND octet_length(payload) = 65536")
[ "$big" -gt 0 ] || it_fail "oversized events are not stored truncated at 64 KiB"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_ingest_exact: ok (60000 events, 3 % bad; $total uses exact, consumed from the backlog in" \
    "${took} s; peak RSS $(rss_peak_mb) MB, $(build_kind) build)"
