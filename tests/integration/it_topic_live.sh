#!/usr/bin/env bash
# Topics come and go with the config file: adding a topic and its rule subscribes to it live
# (its backlog is counted from the start), removing it unsubscribes after a last flush (later
# events there are not counted), all without a restart.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
it_setup topic_live
a="${IT_PREFIX}agent-actions"
b="${IT_PREFIX}extra"
"$PT_IT_ROOT/scripts/services" topic "$b" >/dev/null
write_config() { # topics...
    {
        echo "return {"
        echo "    kafka_group_id = \"$IT_GROUP\", batch_timeout_ms = 200, http_port = 0,"
        echo "    kafka_properties = { [\"group.instance.id\"] = \"$IT_GROUP-1\", [\"session.timeout.ms\"] = \"6000\" },"
        echo "    topics = {"
        for t in "$@"; do echo "        [\"$t\"] = \"rules/agent-actions.lua\","; done
        echo "    },"
        echo "}"
    } >"$IT_CONFIG.new"
    mv "$IT_CONFIG.new" "$IT_CONFIG"
}
produce() { # topic pattern count
    for i in $(seq 1 "$3"); do printf '{"agent_name":"ag","patterns":["%s"]}\n' "$2"; done |
        kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$1"
}
count_of() { pt_psql -tAc "SELECT coalesce(sum(usage_count), 0) FROM pattern_lineage_nodes WHERE pattern_id = '$1'"; }
is_count() { [ "$(count_of "$1")" = "$2" ]; }

write_config "$a"
produce "$a" pa 5
produce "$b" pb 7
engine_start
wait_for 60 is_count pa 5 || it_fail "topic A not counted"
[ "$(count_of pb)" = 0 ] || it_fail "topic B counted before it was configured"

write_config "$a" "$b"          # the poll notices the file within 2 s
wait_for 60 is_count pb 7 || it_fail "topic B's backlog not counted after adding it (pb=$(count_of pb))"
grep -q "subscription changed to 2 topics" "$IT_DIR/engine.log" || it_fail "no resubscription logged"

write_config "$a"
unsubscribed() { grep -q "subscription changed to 1 topics" "$IT_DIR/engine.log"; }
wait_for 30 unsubscribed || it_fail "topic B not unsubscribed"
assigned_again() { [ "$(grep -c 'partitions assigned' "$IT_DIR/engine.log")" -ge 3 ]; }
wait_for 60 assigned_again || it_fail "no rebalance after removing topic B"
produce "$b" pb 3
produce "$a" pa 2
wait_for 60 is_count pa 7 || it_fail "topic A stopped counting"
[ "$(count_of pb)" = 7 ] || it_fail "topic B still counted after its removal ($(count_of pb))"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_topic_live: ok (topic added and removed live, counts exact)"
