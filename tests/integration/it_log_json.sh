#!/usr/bin/env bash
# Structured logs (log_format, issue 19). With log_format = "json" every line the engine writes
# is one JSON object with time, level and msg, whatever the bytes it reports (quotes, control
# characters, invalid UTF-8 from a route's pt.log), through ingest with dead letters, flushes,
# HTTP requests that fail, a reload (SIGHUP) and the stop; flush lines carry their numbers as
# JSON numbers, dead letters their Kafka position and reason, failed requests their id, method
# and path; and the counts stay exact. Then the default text format keeps its shape, shows the
# fields as key=value, and a reload switches it to JSON.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
IT_EXTRA_CONFIG='    log_level = "debug",
    log_format = "json",
    route_instruction_budget = 2000000,'
it_setup log_json
# librdkafka's own lines (its consumer group's debug lines) come from its threads, through log.c.
sed -i -e 's/\["session.timeout.ms"\] = "6000" }/["session.timeout.ms"] = "6000", debug = "cgrp" }/' \
    "$IT_CONFIG"
grep -q 'debug = "cgrp"' "$IT_CONFIG" || it_fail "could not set librdkafka's debug in $IT_CONFIG"
root=$IT_DIR/root
mkdir -p "$root"
cp -r "$PT_IT_ROOT/lua" "$PT_IT_ROOT/rules" "$PT_IT_ROOT/sql" "$root/"
# A route whose pt.log message holds every byte JSON must escape or replace: a quote, a
# backslash, control characters, DEL, bytes that start no UTF-8 sequence and a cut sequence.
cat >"$root/lua/routes/zz_log.lua" <<'LUA'
return {
    { method = "GET", path = "/test/log-escapes", handler = function()
        pt.log("warn", 'escapes: quote " backslash \\ newline \n tab \t bell \7 del \127' ..
            ' bad \255\254 cut \226\130 ok \u{e9}\u{1F600} end')
        return { ok = true }
    end },
    { method = "GET", path = "/test/boom", handler = function() error('boom "quoted"') end },
    -- over route_instruction_budget: the request fails in C (routes.c), not in the router
    { method = "GET", path = "/test/spin", handler = function() while true do end end },
}
LUA
port=$(free_port)
url="http://127.0.0.1:$port"
log=$IT_DIR/engine.log

"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 4000 --bad-ratio 0.03 --seed 19 \
    --truth "$IT_DIR/truth.tsv" --quiet || it_fail "the producer failed"
total=$(truth_total "$IT_DIR/truth.tsv")
engine_start PATTERNTRACK_ROOT="$root" HTTP_PORT="$port"
up() { curl -sf "$url/health" >/dev/null; }
wait_for 30 up || it_fail "HTTP did not come up"

code() { curl -s -o /dev/null -w '%{http_code}' "$url$1"; }
[ "$(code /test/log-escapes)" = 200 ] || it_fail "/test/log-escapes did not answer 200"
[ "$(code /test/boom)" = 500 ] || it_fail "/test/boom did not answer 500"
[ "$(code /test/spin)" = 500 ] || it_fail "/test/spin did not answer 500"
[ "$(code /no/such/route)" = 404 ] || it_fail "an unknown path did not answer 404"

wait_total "$total" 120 || it_fail "totals did not reach $total (now $(db_total))"
kill -HUP "$IT_PID"
reloaded() { grep -q '"msg":"reload: ok' "$log"; }
wait_for 20 reloaded || it_fail "SIGHUP did not reload"
[ "$(code /health)" = 200 ] || it_fail "/health did not answer 200 after the reload"
check_truth "$IT_DIR/truth.tsv" "$IT_PREFIX" || it_fail "counts differ with JSON logs"
engine_stop || it_fail "SIGTERM exit status $?"

# Every line: one JSON object (strict: no NaN, UTF-8 only) with time, level and msg.
python3 - "$log" "$IT_PREFIX" <<'PY' || it_fail "the JSON log is not what it should be"
import json, re, sys

path, prefix = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
fail = []
if not raw.endswith(b"\n"):
    fail.append("the log does not end with a newline")
try:
    text = raw.decode("utf-8")
except UnicodeDecodeError as e:
    sys.exit(f"the log is not UTF-8: {e}")

def no_constants(c):
    raise ValueError(f"non-JSON constant {c}")

objs = []
for i, line in enumerate(text.split("\n")[:-1], 1):
    try:
        o = json.loads(line, parse_constant=no_constants)
    except ValueError as e:
        fail.append(f"line {i} is not JSON ({e}): {line[:200]!r}")
        continue
    if not isinstance(o, dict):
        fail.append(f"line {i} is not an object: {line[:200]!r}")
        continue
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(o.get("time"))):
        fail.append(f"line {i}: bad time: {line[:200]!r}")
    if o.get("level") not in ("debug", "info", "warn", "error"):
        fail.append(f"line {i}: bad level: {line[:200]!r}")
    if not isinstance(o.get("msg"), str):
        fail.append(f"line {i}: no msg: {line[:200]!r}")
    objs.append(o)

def num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)

def isint(v):
    return isinstance(v, int) and not isinstance(v, bool)

flushes = [o for o in objs if o.get("msg") == "flush committed"]
if not flushes:
    fail.append("no 'flush committed' line")
for o in flushes:
    for k in ("events", "references", "patterns", "bytes"):
        if not isint(o.get(k)):
            fail.append(f"flush line without an integer {k}: {o}")
    if not num(o.get("duration_ms")) or o["duration_ms"] < 0:
        fail.append(f"flush line without a numeric duration_ms: {o}")
if flushes and sum(o.get("events", 0) for o in flushes if isint(o.get("events"))) <= 0:
    fail.append("the flush lines count no events")

dead = [o for o in objs if o.get("msg") == "dead letter"]
if not dead:
    fail.append("no 'dead letter' line")
for o in dead:
    if not (isinstance(o.get("topic"), str) and o["topic"].startswith(prefix)):
        fail.append(f"dead letter without its topic: {o}")
    if not isint(o.get("partition")) or not isint(o.get("offset")) or o["offset"] < 0:
        fail.append(f"dead letter without partition and offset: {o}")
    if not isinstance(o.get("reason"), str) or not o["reason"]:
        fail.append(f"dead letter without a reason: {o}")

want = ('escapes: quote " backslash \\ newline \n tab \t bell \x07 del \x7f bad \ufffd\ufffd'
        ' cut \ufffd\ufffd ok \u00e9\U0001F600 end')
esc = [o for o in objs if o.get("msg", "").startswith("escapes:")]
if len(esc) != 1 or esc[0]["msg"] != want or esc[0]["level"] != "warn":
    fail.append(f"the pt.log line with escapes came out as {esc!r}")
if not any("boom \"quoted\"" in o.get("msg", "") and o["level"] == "error" for o in objs):
    fail.append("the error of /test/boom was not logged")
spin = [o for o in objs if o.get("msg", "").startswith("http request failed")]
if not any(isint(o.get("request_id")) and o.get("method") == "GET" and o.get("path") == "/test/spin"
           for o in spin):
    fail.append(f"the failed /test/spin has no request_id, method and path: {spin!r}")
if not any(re.match(r"kafka [A-Z]+: ", o.get("msg", "")) for o in objs):
    fail.append("no line from librdkafka")
if not any(o.get("msg") == "SIGHUP: reloading" for o in objs):
    fail.append("no line of the reload")

for f in fail[:20]:
    print(f, file=sys.stderr)
if fail:
    sys.exit(1)
print(f"json log: {len(objs)} lines, {len(flushes)} flushes "
      f"({sum(o['events'] for o in flushes)} events), {len(dead)} dead-letter lines")
PY

# The default is text, in its shape; fields come as key=value; a reload switches to JSON.
sed -i -e '/log_format = "json"/d' "$IT_CONFIG"
mv "$log" "$IT_DIR/json.log"
engine_start PATTERNTRACK_ROOT="$root" HTTP_PORT="$port"
wait_for 30 up || it_fail "HTTP did not come up (text format)"
[ "$(code /test/spin)" = 500 ] || it_fail "/test/spin did not answer 500 (text format)"
spin_logged() { grep -Eq ' request_id=[0-9]+ method=GET path=/test/spin$' "$log"; }
wait_for 10 spin_logged || it_fail "the failed request's fields are not key=value in text"
cp "$log" "$IT_DIR/text.log"
stamp='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z (debug|info |warn |error) '
n_text=$(grep -Ec "$stamp" "$IT_DIR/text.log" || true)
[ "$n_text" -ge 3 ] || it_fail "only $n_text lines in the text format's shape"
head -n 1 "$IT_DIR/text.log" | grep -Eq "$stamp" || it_fail "the first line is not text: $(head -n 1 "$IT_DIR/text.log")"
if grep -q '^{' "$IT_DIR/text.log"; then
    it_fail "JSON in the default (text) format"
fi
sed -i -e 's/^    log_level = "debug",$/&\n    log_format = "json",/' "$IT_CONFIG"
grep -q 'log_format = "json"' "$IT_CONFIG" || it_fail "could not set log_format in $IT_CONFIG"
kill -HUP "$IT_PID"
json_reload() { grep -q '^{"time":"[^"]*","level":"info","msg":"reload: ok' "$log"; }
wait_for 20 json_reload || it_fail "the reload did not switch the log to JSON"
engine_stop || it_fail "SIGTERM exit status $? (text format)"
# After the switch, JSON only.
python3 - "$log" <<'PY' || it_fail "lines after the switch to JSON are not JSON"
import json, sys

lines = open(sys.argv[1], "rb").read().decode("utf-8").split("\n")[:-1]
first = next(i for i, l in enumerate(lines) if '"msg":"reload: ok' in l)
# The lines between the reload's start and its swap are still text.
bad = [l for l in lines[first:] if not isinstance(json.loads(l), dict)]
sys.exit(1 if bad else 0)
PY
echo "it_log_json: ok (4000 events, $total uses exact with JSON logs; text format unchanged in" \
    "shape, $n_text text lines; SIGHUP switches text to JSON; $(build_kind) build)"
