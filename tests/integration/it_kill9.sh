#!/usr/bin/env bash
# Exactly once across crashes: while events are being produced, the engine is killed with
# SIGKILL at least 20 times and restarted. Odd rounds kill it right after a flush committed plus
# a random 0-400 ms; even rounds kill it while PostgreSQL is running a flush for it (seen in
# pg_stat_activity; whether the flush was still running after the kill is checked and counted).
# At the end every total equals the ground truth: nothing lost, nothing twice.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    batch_max_events = 20000, batch_timeout_ms = 700,' it_setup kill9
# A slow database: every flush spends at least 300 ms in PostgreSQL (a statement trigger on the
# offsets it stores), so that a kill aimed at a running flush lands inside it even when the
# machine is loaded, and the check after the kill still finds it running.
slow_flushes 0.3

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --pairs-truth 32 --events 360000 --rate 2400 --bad-ratio 0.01 \
    --seed 11 --truth "$IT_DIR/truth.tsv" --quiet &
producer=$!

# wait_flush: waits (up to 20 s) until a flush of this database is running; prints its backend
# pid and start time.
pt_psql -c "CREATE FUNCTION pg_temp_wait_flush() RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp(); r record;
BEGIN
    LOOP
        PERFORM pg_stat_clear_snapshot();
        SELECT pid, query_start INTO r FROM pg_stat_activity
         WHERE datname = current_database() AND state = 'active' AND query LIKE 'SELECT pt_flush(%';
        IF FOUND THEN RETURN r.pid || '|' || extract(epoch FROM r.query_start); END IF;
        IF clock_timestamp() - t0 > interval '20 s' THEN RETURN NULL; END IF;
        PERFORM pg_sleep(0.002);
    END LOOP;
END \$\$"
# in_flush T_KILL QUERY_START_EPOCH: the kill came less than the trigger's 300 ms after the
# flush started, so the flush was still running when the engine died.
in_flush() { awk -v k="$1" -v q="$2" 'BEGIN { exit !(k - q < 0.3) }'; }

RANDOM=4242
progressed() { [ "$(db_total)" -gt "$1" ]; }
rss_watch
kills=0 midflush=0 restarts=()
for round in $(seq 1 "${KILLS:-24}"); do
    kill -0 "$producer" 2>/dev/null || break # everything produced: later kills prove nothing new
    t0=$EPOCHREALTIME
    engine_start
    before=$(db_total)
    wait_for 60 progressed "$before" || it_fail "no progress in round $round"
    restarts+=("$(secs_since "$t0")")
    if [ $((round % 2)) = 0 ]; then
        seen=$(pt_psql -At -c 'SELECT pg_temp_wait_flush()')
        [ -n "$seen" ] || it_fail "no flush seen running in round $round"
        kill -9 "$IT_PID"
        t_kill=${EPOCHREALTIME/,/.}
        engine_kill9
        if in_flush "$t_kill" "${seen#*|}"; then
            midflush=$((midflush + 1))
        fi
    else
        sleep "0.$(printf '%03d' $((RANDOM % 400)))"
        engine_kill9
    fi
    kills=$((kills + 1))
done
wait "$producer" || it_fail "the producer failed"
[ "$kills" -ge "${MIN_KILLS:-20}" ] || it_fail "only $kills kills happened while events were produced"
# The flush-time kills are the point of the even rounds: most of them must have landed inside a
# flush (fewer only if the machine stalled the test for 300 ms between seeing it and killing).
[ "$midflush" -ge 5 ] || it_fail "only $midflush of the flush-time kills landed inside a flush"
total=$(truth_total "$IT_DIR/truth.tsv")
engine_start
wait_total "$total" 180 || it_fail "after $kills kills totals did not reach $total (now $(db_total))"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "totals differ after $kills kills"
engine_stop || it_fail "SIGTERM exit status $?"
sorted=$(printf '%s\n' "${restarts[@]}" | sort -n)
echo "it_kill9: ok (360000 events over 150 s; $kills kill -9, $midflush of them inside a flush running in" \
    "PostgreSQL; $total uses exact; start to first commit: median $(sed -n "$(((${#restarts[@]} + 1) / 2))p" <<<"$sorted") s," \
    "max $(tail -n1 <<<"$sorted") s; peak RSS $(rss_peak_mb) MB, $(build_kind) build)"
