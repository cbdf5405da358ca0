#!/usr/bin/env bash
# A seeded mix of events in every shape the default rules read, with bad events among them, is
# counted exactly: per pattern, per (pattern, agent), per hour, per topic, and every dead letter
# is stored with its reason, and every co-occurrence pair. Then SIGTERM stops the engine cleanly
# (exit 0). The engine does not fold its partner lists here (fold_interval_ms = 0): the first
# check sees them all pending, and `patterntrack fold` runs afterwards, in parts. Meanwhile
# registrations change pattern types, so flushes built with a type read before meet PT410 and
# are built again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='fold_interval_ms = 0,'
it_setup ingest_exact
rss_watch

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --pairs-truth 32 --events 60000 --bad-ratio 0.03 --seed 7 \
    --truth "$IT_DIR/truth.tsv" --quiet
total=$(truth_total "$IT_DIR/truth.tsv")
t0=$EPOCHREALTIME
engine_start
# Meanwhile the catalog gives used patterns types and changes them (pt_register_patterns, what
# PUT/POST /api/patterns run), round after round until the drain is done, and once more after
# it: agent_type_usage must follow the catalog's final types, which check_truth groups the
# truth by.
register_round() {
    pt_psql -tAc "
        WITH p AS (SELECT array_agg(pattern_id::text) AS ids, count(*)::int AS n,
                          array_agg((ARRAY['code', 'doc', 'tool'])[1 + floor(random() * 3)::int]) AS types
                     FROM (SELECT pattern_id FROM pattern_lineage_nodes
                            ORDER BY random() LIMIT 200) x)
        SELECT count(*) FROM p, pt_register_patterns(p.ids, array_fill(NULL::text, ARRAY[p.n]),
            p.types, array_fill(NULL::timestamptz, ARRAY[p.n]), array_fill(NULL::text, ARRAY[p.n]))"
}
register_types() {
    local rounds=0
    while [ ! -e "$IT_DIR/drained" ]; do
        register_round >/dev/null || return 1
        rounds=$((rounds + 1))
    done
    echo "$rounds" >"$IT_DIR/rounds"
}
register_types &
reg=$!
wait_total "$total" 120 || it_fail "totals did not reach $total (now $(db_total))"
took=$(secs_since "$t0")
touch "$IT_DIR/drained"
wait "$reg" || it_fail "registering pattern types failed"
[ "$(register_round)" = 200 ] || it_fail "the last registration round did not register 200 patterns"
n_typed=$(pt_psql -tAc "SELECT count(DISTINCT pattern_type) FROM agent_type_usage")
[ "$n_typed" -ge 3 ] || it_fail "registrations did not reach agent_type_usage ($n_typed types)"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ from the ground truth"
# a dead letter keeps its payload (truncated) and position
n_dl=$(pt_psql -tAc "SELECT count(*) FROM usage_dead_letters WHERE payload IS NOT NULL AND kafka_offset >= 0 AND partition >= 0")
[ "$n_dl" -gt 0 ] || it_fail "no dead letters stored"
big=$(pt_psql -tAc "SELECT count(*) FROM usage_dead_letters WHERE reason = 'too large' AND truncated AND octet_length(payload) = 65536")
[ "$big" -gt 0 ] || it_fail "oversized events are not stored truncated at 64 KiB"
engine_stop || it_fail "SIGTERM exit status $?"
# The backlog was drained with librdkafka's queue refilled by the fetch wake-up (kafka_wake.h).
wakeups=$(sed -n 's/.*kafka: \([0-9]*\) fetch wake-ups were sent.*/\1/p' "$IT_DIR/engine.log" | tail -1)
[ "${wakeups:-0}" -gt 0 ] || it_fail "no fetch wake-up was sent while the backlog drained"
folded=$(pt_psql -tAc "SELECT (SELECT count(*) FROM pattern_lists) + (SELECT count(*) FROM agent_lists)")
pending=$(pt_psql -tAc "SELECT coalesce(sum(n_partners), 0) / 2 FROM pattern_lists_pending")
pending_agents=$(pt_psql -tAc "SELECT count(*) FROM agent_lists_pending")
[ "$folded" = 0 ] && [ "$pending" -gt 0 ] && [ "$pending_agents" -gt 0 ] ||
    it_fail "with folding off every list should be pending ($folded folded, $pending pairs, $pending_agents agent rows pending)"
# Folds of the rows of at most 300 patterns and agents each, as `patterntrack fold` does them,
# until nothing is pending.
folds=0
left() { pt_psql -tAc "SELECT (SELECT count(*) FROM pattern_lists_pending) + (SELECT count(*) FROM agent_lists_pending)"; }
while [ "$(left)" != 0 ]; do
    (cd "$PT_IT_ROOT" && "$PT_BIN" fold --owners 300 --config "$IT_CONFIG" >/dev/null) ||
        it_fail "patterntrack fold failed"
    folds=$((folds + 1))
    [ "$folds" -lt 1000 ] || it_fail "fold does not drain the pending rows"
done
[ "$folds" -ge 2 ] || it_fail "the lists were folded in one part: test the parts"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "the counts differ after the folds"
# check_truth sees a wrong entry, folded or pending (so its passes mean something): the first
# entry of one folded list counted once more (its other side, in the partner's or the agent's
# list, is not), in each kind of list.
one=$(pt_psql -tAc "SELECT min(pattern_id COLLATE \"C\") FROM pattern_lists WHERE partners IS NOT NULL")
agent=$(pt_psql -tAc "SELECT min(agent_name COLLATE \"C\") FROM agent_lists")
bump() { # TABLE KEY_COLUMN KEY LIST_COLUMN DELTA
    pt_psql -v key="$3" -v d="$5" >/dev/null <<SQL
UPDATE $1
   SET $4 = (SELECT pt_list_encode(array_agg(partner ORDER BY o),
                                   array_agg(cnt + CASE WHEN o = 1 THEN :d ELSE 0 END ORDER BY o),
                                   CASE WHEN get_byte($4, 0) = 3
                                        THEN array_agg(first_us ORDER BY o) END,
                                   array_agg(last_us ORDER BY o))
               FROM pt_list_entries($4) WITH ORDINALITY e(partner, cnt, first_us, last_us, o))
 WHERE $2 = :'key';
SQL
}
bump_check() { # as bump: one entry counted once more, seen, then put back
    bump "$@" 1
    if check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" >/dev/null 2>&1; then
        it_fail "check_truth misses a folded entry counted once too often ($1 $4 of $3)"
    fi
    bump "$@" -1
}
bump_check pattern_lists pattern_id "$one" partners
bump_check pattern_lists pattern_id "$one" agents
bump_check agent_lists agent_name "$agent" patterns
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "the folded lists did not come back"
pt_psql -v p="$one" >/dev/null <<'SQL'
INSERT INTO pattern_lists_pending (flush_id, pattern_id, n_agents, agents, n_partners, n_low, partners)
SELECT 0, m.pattern_id, 0, NULL, 1, (e.partner COLLATE "C" < m.pattern_id COLLATE "C")::int,
       pt_list_encode(ARRAY[e.partner], ARRAY[1::bigint], NULL, ARRAY[0::bigint])
  FROM pattern_lists m, pt_list_entries(m.partners) e
 WHERE m.pattern_id = :'p' LIMIT 1;
SQL
if check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" >/dev/null 2>&1; then
    it_fail "check_truth misses a pending pair counted once too often"
fi
pt_psql -c "DELETE FROM pattern_lists_pending WHERE flush_id = 0" >/dev/null
# ... and a (pattern, agent) key missing from pattern_agents
gone=$(pt_psql -tAc "DELETE FROM pattern_agents WHERE (pattern_id, agent_name) IN
                     (SELECT pattern_id, agent_name FROM pattern_agents LIMIT 1)
                     RETURNING pattern_id || E'\\t' || agent_name")
if check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" >/dev/null 2>&1; then
    it_fail "check_truth misses a key missing from pattern_agents"
fi
pt_psql -v p="${gone%%$'\t'*}" -v a="${gone#*$'\t'}" >/dev/null <<'SQL'
INSERT INTO pattern_agents VALUES (:'p', :'a');
SQL
# ... and a top of pairs that is not the folded lists' own (the folds kept it so far)
keep=$(pt_psql -tAc "SELECT least(pt_cooccurrence_top_keep(), (SELECT sum(n_partners - n_low) FROM pattern_lists))")
[ "$(pt_psql -tAc "SELECT count(*) FROM pattern_cooccurrence_top")" = "$keep" ] ||
    it_fail "pattern_cooccurrence_top should hold $keep pairs"
pt_psql -c "DELETE FROM pattern_cooccurrence_top WHERE (pattern_id_1, pattern_id_2) IN
            (SELECT pattern_id_1, pattern_id_2 FROM pattern_cooccurrence_top
              ORDER BY cooccurrence_count LIMIT 1)" >/dev/null
if check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" >/dev/null 2>&1; then
    it_fail "check_truth misses a pair missing from pattern_cooccurrence_top"
fi
pt_psql -c "SELECT pt_rebuild_cooccurrence_top()" >/dev/null
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "pt_rebuild_cooccurrence_top() did not repair the top"
for corrupt in "UPDATE agent_usage_totals SET distinct_patterns = distinct_patterns + 1
                 WHERE agent_name IN (SELECT agent_name FROM agent_usage_totals LIMIT 1)" \
               "UPDATE agent_type_usage SET last_used_at = last_used_at - interval '1 microsecond'
                 WHERE (agent_name, pattern_type) IN (SELECT agent_name, pattern_type FROM agent_type_usage LIMIT 1)"; do
    pt_psql -c "BEGIN" -c "$corrupt" -c "COMMIT" >/dev/null
    if check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" >/dev/null 2>&1; then
        it_fail "check_truth misses: $corrupt"
    fi
    pt_psql -c "SELECT pt_rebuild_totals()" >/dev/null
done
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "pt_rebuild_totals does not agree with the flush"
echo "it_ingest_exact: ok (60000 events, 3 % bad; $total uses and $pending pending pairs exact, folded in $folds parts; consumed from the backlog in" \
    "${took} s with $(cat "$IT_DIR/rounds") type registrations of 200 patterns meanwhile; peak RSS" \
    "$(rss_peak_mb) MB, $(build_kind) build)"
