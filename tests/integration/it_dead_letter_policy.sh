#!/usr/bin/env bash
# What dead letters keep, and for how long (issue 21):
#   * dead_letter_payload_max = 0 keeps no payload byte: the row has the payload's size and its
#     hash (XXH3-128 of the whole payload, checked against xxhsum -H2), payload NULL, truncated;
#     /api/dead-letters shows no payload; a reload to payload_max = 8 keeps 8 bytes again;
#   * dead_letter_retention_days deletes only rows older than that (rows back-dated by SQL: 40
#     days old go, 10 days old and new ones stay), counted in patterntrack_dead_letters_pruned_total;
#     0 keeps them all;
#   * /health's dead_letters and the metrics say how many rows are kept and the oldest's time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    dead_letter_payload_max = 0, dead_letter_retention_days = 30,' it_setup dlpolicy
port=$(free_port)
url="http://127.0.0.1:$port"
engine_start HTTP_PORT="$port"
up() { curl -sf "$url/health" >/dev/null; }
wait_for 60 up || it_fail "HTTP did not come up"
topic="${IT_PREFIX}agent-actions"

# Three bad lines (two alike) and one good event, as NDJSON: the bad ones are dead letters.
bad1='{"agent_name": "a", "patterns": ["x"]'   # not JSON
bad2='[1, 2, 3]'                                # not an object
printf '%s\n%s\n%s\n%s\n' "$bad1" "$bad2" "$bad1" '{"agent_name":"a","patterns":["ok-1"]}' >"$IT_DIR/body"
r=$(curl -s -X POST -H 'Content-Type: application/x-ndjson' --data-binary @"$IT_DIR/body" \
    "$url/api/patterns/usage/events?topic=$topic")
echo "$r" | grep -q '"dead_lettered":3' || it_fail "POST answered $r"

rows() { pt_psql -tAc "SELECT payload IS NULL, payload_size, truncated, payload_hash
                         FROM usage_dead_letters ORDER BY id" | tr '\n' ' '; }
hash_of() { printf '%s' "$1" | xxhsum -H2 - | awk '{ h = $1; print substr(h, 1, 8) "-" substr(h, 9, 4) "-" substr(h, 13, 4) "-" substr(h, 17, 4) "-" substr(h, 21) }'; }
h1=$(hash_of "$bad1")
h2=$(hash_of "$bad2")
want="t|${#bad1}|t|$h1 t|${#bad2}|t|$h2 t|${#bad1}|t|$h1 "
[ "$(rows)" = "$want" ] || it_fail "payload_max = 0 rows: '$(rows)', want '$want'"
n=$(pt_psql -tAc "SELECT coalesce(sum(octet_length(payload)), 0) FROM usage_dead_letters")
[ "$n" = 0 ] || it_fail "$n payload bytes kept with payload_max = 0"
curl -sf "$url/api/dead-letters" | python3 -c '
import json, sys
d = json.load(sys.stdin)["dead_letters"]
ok = len(d) == 3 and all(x["payload"] is None and x["payload_encoding"] is None and
                         x["payload_shown_bytes"] == 0 and x["payload_truncated_at_ingest"] and
                         x["payload_hash"] for x in d)
sys.exit(0 if ok else 1)' || it_fail "/api/dead-letters with no payload kept: $(curl -s "$url/api/dead-letters")"

# A reload to payload_max = 8 keeps the first 8 bytes of the next ones.
sed -i 's/dead_letter_payload_max = 0/dead_letter_payload_max = 8/' "$IT_CONFIG"
code=$(curl -s -o "$IT_DIR/reload" -w '%{http_code}' -X POST "$url/admin/reload")
[ "$code" = 200 ] || it_fail "reload: $code $(cat "$IT_DIR/reload")"
printf '%s\n' "$bad2" >"$IT_DIR/body2"
curl -s -X POST -H 'Content-Type: application/x-ndjson' --data-binary @"$IT_DIR/body2" \
    "$url/api/patterns/usage/events?topic=$topic" | grep -q '"dead_lettered":1' || it_fail "second POST"
last=$(pt_psql -tAc "SELECT convert_from(payload, 'UTF8') || '|' || truncated || '|' || payload_hash
                       FROM usage_dead_letters ORDER BY id DESC LIMIT 1")
[ "$last" = "${bad2:0:8}|true|$h2" ] || it_fail "payload_max = 8: '$last'"

# Retention: rows 40 and 10 days old (back-dated copies of a kept one); the 40-day ones go.
pt_psql -qc "INSERT INTO usage_dead_letters (topic, partition, kafka_offset, reason, payload_size,
                                             truncated, created_at)
             SELECT 'old', 0, g, 'test', 0, false, now() - interval '40 days' - g * interval '1 s'
               FROM generate_series(1, 25) g;
             INSERT INTO usage_dead_letters (topic, partition, kafka_offset, reason, payload_size,
                                             truncated, created_at)
             SELECT 'recent', 0, g, 'test', 0, false, now() - interval '10 days'
               FROM generate_series(1, 5) g"
none_old() { [ "$(pt_psql -tAc "SELECT count(*) FROM usage_dead_letters WHERE topic = 'old'")" = 0 ]; }
wait_for 60 none_old || it_fail "rows older than dead_letter_retention_days were not deleted"
left=$(pt_psql -tAc "SELECT count(*) FILTER (WHERE topic = 'recent') || '/' || count(*) FROM usage_dead_letters")
[ "$left" = "5/9" ] || it_fail "retention deleted more than the old rows: recent/all = $left, want 5/9"
metric() { curl -sf "$url/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
[ "$(metric patterntrack_dead_letters_pruned_total)" = 25 ] ||
    it_fail "pruned_total $(metric patterntrack_dead_letters_pruned_total), want 25"
# the count comes after the prune in the same pass
counted() { [ "$(metric patterntrack_dead_letters_stored)" = 9 ]; }
wait_for 30 counted || it_fail "patterntrack_dead_letters_stored $(metric patterntrack_dead_letters_stored), want 9"
oldest=$(pt_psql -tAc "SELECT extract(epoch FROM now() - min(created_at))::bigint FROM usage_dead_letters")
age=$(metric patterntrack_dead_letters_oldest_age_seconds)
awk -v a="$age" -v o="$oldest" 'BEGIN { exit !(a >= o - 30 && a <= o + 30) }' ||
    it_fail "oldest_age_seconds $age, the oldest row is $oldest s old"
curl -sf "$url/health" | python3 -c '
import json, sys
d = json.load(sys.stdin)["dead_letters"]
ok = (d["rows"] == 9 and d["retention_days"] == 30 and d["payload_max"] == 8 and
      d["pruned"] == 25 and d["oldest_at"] is not None)
sys.exit(0 if ok else 1)' || it_fail "/health dead_letters: $(curl -s "$url/health")"

# 0 keeps everything: a 40-day-old row stays through a whole pass (seen counted: 10 rows).
sed -i 's/dead_letter_retention_days = 30/dead_letter_retention_days = 0/' "$IT_CONFIG"
code=$(curl -s -o "$IT_DIR/reload" -w '%{http_code}' -X POST "$url/admin/reload")
[ "$code" = 200 ] || it_fail "reload: $code $(cat "$IT_DIR/reload")"
pt_psql -qc "INSERT INTO usage_dead_letters (topic, partition, kafka_offset, reason, payload_size,
                                             truncated, created_at)
             VALUES ('kept', 0, 1, 'test', 0, false, now() - interval '400 days')"
counted10() { [ "$(metric patterntrack_dead_letters_stored)" = 10 ]; }
wait_for 30 counted10 || it_fail "the row kept with retention 0 was not counted"
[ "$(pt_psql -tAc "SELECT count(*) FROM usage_dead_letters WHERE topic = 'kept'")" = 1 ] ||
    it_fail "dead_letter_retention_days = 0 deleted a row"
engine_stop || it_fail "SIGTERM exit status $?"
echo "it_dead_letter_policy: ok (payload_max 0: size and hash only; retention deleted 25 old rows, kept the rest; 0 keeps all; $(build_kind) build)"
