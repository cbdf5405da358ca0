#!/usr/bin/env bash
# Checks deploy/grafana/patterntrack.json, the Grafana dashboard:
#   1. structure: valid JSON, a Prometheus datasource input (__inputs) and a datasource template
#      variable that every panel, target, annotation and query variable uses; unique panel ids;
#      every panel has a title, a description, a unit and targets with an expr; no two panels
#      overlap on the grid; every template variable an expression uses is defined;
#   2. PromQL: every expression (panels, annotations, query variables), template variables
#      substituted with concrete values, wrapped as a recording rule and checked by
#      `promtool check rules` (and a broken expression must make promtool fail);
#   3. metrics: a real engine ingests events from pt-loadgen (bad ones included, so dead letters
#      exist) and answers a few HTTP requests; every metric the expressions read is in its
#      /metrics (histograms through _bucket/_sum/_count of a family of TYPE histogram), and every
#      label they match, group by or show in a legend is one those series carry (or job/instance,
#      which Prometheus adds); `up` is the only name allowed from outside the engine. The check
#      must fail, naming the metric, on a made-up one;
#   4. the engine stops cleanly on SIGTERM (exit status 0).
# Needs promtool (Debian package prometheus), python3, jq, curl, and the services of
# scripts/services (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS). Prints one `test_grafana: ok` line.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
dash=$PT_IT_ROOT/deploy/grafana/patterntrack.json

# grafana_py MODE ARGS...: the JSON and PromQL work, in one Python program.
#   analyse DASHBOARD OUTDIR   structure checks; writes OUTDIR/rules.yml (one recording rule per
#                              expression) and OUTDIR/exprs.tsv (where, expr, labels it needs)
#   metrics METRICS EXPRS      checks every metric and label of EXPRS against a /metrics text
# Prints `FAIL: ...` lines and exits 1 on any failure.
grafana_py() {
    python3 - "$@" <<'PY'
import json
import re
import sys

fails = []


def fail(msg):
    fails.append(msg)


def done():
    for f in fails:
        print("FAIL: " + f)
    sys.exit(1 if fails else 0)


# Grafana's global variables, with the values a 1 h range at a 15 s scrape interval gives.
BUILTINS = {
    "__rate_interval": "1m", "__interval": "30s", "__interval_ms": "30000",
    "__range": "1h", "__range_s": "3600", "__range_ms": "3600000",
}
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
DS_VARS = ("${datasource}", "$datasource")
# PromQL words that are not metric names when not followed by "(".
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "start", "end"}
GROUPING_RE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
NAME_RE = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")
MATCHER_RE = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
TARGET_LABELS = {"job", "instance"}  # added by Prometheus at scrape time
OUTSIDE = {"up": "Prometheus's scrape health series"}


def promql_parts(expr):
    """Returns ([(metric, {matcher labels})], {grouping labels}) of a PromQL expression."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    selectors = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^{}]*)\}", s):
        selectors.append((m.group(1), set(MATCHER_RE.findall(m.group(2)))))
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    grouping = set()
    for m in GROUPING_RE.finditer(s):
        grouping |= {x.strip() for x in m.group(2).split(",") if x.strip()}
    s = GROUPING_RE.sub(" ", s)
    names = []
    for m in NAME_RE.finditer(s):
        word = m.group(1)
        if word.lower() in KEYWORDS or re.match(r"\s*\(", s[m.end():]):
            continue
        names.append(word)
    metrics = []
    for n in dict.fromkeys(names):
        labels = set()
        for sel_name, sel_labels in selectors:
            if sel_name == n:
                labels |= sel_labels
        metrics.append((n, labels))
    if any(sel_name is None for sel_name, _ in selectors):
        fail(f"{expr}: a selector without a metric name (not checkable)")
    return metrics, grouping


def analyse(path, outdir):
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path} is not valid JSON: {e}")
        done()
    for key, typ in (("title", str), ("uid", str), ("schemaVersion", int), ("panels", list),
                     ("templating", dict), ("__inputs", list)):
        if not isinstance(d.get(key), typ):
            fail(f"top level: {key} is missing or not a {typ.__name__}")
    if fails:
        done()
    if d["schemaVersion"] < 36:
        fail(f"schemaVersion {d['schemaVersion']} is older than Grafana 9's")
    inputs = [i for i in d["__inputs"]
              if i.get("type") == "datasource" and i.get("pluginId") == "prometheus"]
    if len(inputs) != 1:
        fail("__inputs must hold exactly one Prometheus datasource input")
    tvars = {v.get("name"): v for v in d["templating"].get("list", [])}
    dsvar = tvars.get("datasource")
    if not dsvar or dsvar.get("type") != "datasource" or dsvar.get("query") != "prometheus":
        fail("templating: no variable `datasource` of type datasource, query prometheus")
    elif inputs and dsvar.get("current", {}).get("value") != "${%s}" % inputs[0].get("name"):
        fail("the datasource variable does not default to the __inputs datasource")

    def is_ds_var(ds):
        return (isinstance(ds, dict) and ds.get("uid") in DS_VARS
                and ds.get("type") == "prometheus") or ds in DS_VARS

    def value_of(name, where):
        if name.startswith("__"):
            if name not in BUILTINS:
                fail(f"{where}: unknown Grafana variable ${name}")
                return "x"
            return BUILTINS[name]
        v = tvars.get(name)
        if v is None:
            fail(f"{where}: template variable ${name} is not defined")
            return "x"
        cur = v.get("current", {}).get("value")
        if isinstance(cur, list):
            cur = cur[0] if cur else None
        if cur == "$__all" or (cur in (None, "") and v.get("includeAll")):
            cur = v.get("allValue") or ".*"
        if not isinstance(cur, str) or cur == "" or "$" in cur:
            fail(f"{where}: variable ${name} has no concrete current value")
            return "x"
        return cur

    def substitute(expr, where):
        return VAR_RE.sub(lambda m: value_of(m.group(1) or m.group(2) or m.group(3), where), expr)

    exprs = []  # (where, record name, expr, extra labels needed)

    def add(where, record, expr, labels=()):
        if not isinstance(expr, str) or not expr.strip():
            fail(f"{where}: empty or missing expr")
            return
        exprs.append((where, record, substitute(expr, where), list(labels)))

    panels = []
    for p in d["panels"]:
        panels.append(p)
        if p.get("type") == "row":
            panels.extend(p.get("panels") or [])
    if not any(p.get("type") != "row" for p in panels):
        fail("no panels")
    ids = {}
    for p in panels:
        pid = p.get("id")
        title = p.get("title") or "?"
        if not isinstance(pid, int):
            fail(f"panel {title!r}: no integer id")
            continue
        if pid in ids:
            fail(f"panel id {pid} is used by {ids[pid]!r} and {title!r}")
        ids[pid] = title
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in "xywh") or gp["x"] + gp["w"] > 24:
            fail(f"panel {title!r}: bad gridPos {gp}")
        if p.get("type") == "row":
            continue
        where = f"panel {pid} {title!r}"
        if not p.get("title"):
            fail(f"panel {pid}: no title")
        if not p.get("description"):
            fail(f"{where}: no description")
        if not is_ds_var(p.get("datasource")):
            fail(f"{where}: datasource is {p.get('datasource')!r}, not the ${{datasource}} variable")
        if not (p.get("fieldConfig", {}).get("defaults", {}).get("unit")):
            fail(f"{where}: no unit")
        targets = p.get("targets") or []
        if not targets:
            fail(f"{where}: no targets")
        refids = set()
        for t in targets:
            ref = t.get("refId")
            if not ref or ref in refids:
                fail(f"{where}: missing or repeated refId {ref!r}")
            refids.add(ref)
            if "datasource" in t and not is_ds_var(t["datasource"]):
                fail(f"{where} target {ref}: datasource is not the ${{datasource}} variable")
            legend = re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat") or "")
            add(f"{where} target {ref}", f"panel_{pid}:{ref}", t.get("expr"), legend)
    # No two panels of the top level overlap (rows that are collapsed hold theirs inside).
    cells, overlaps = {}, set()
    for p in d["panels"]:
        gp = p.get("gridPos") or {}
        if not all(isinstance(gp.get(k), int) for k in "xywh"):
            continue
        for x in range(gp["x"], gp["x"] + gp["w"]):
            for y in range(gp["y"], gp["y"] + gp["h"]):
                other = cells.setdefault((x, y), p.get("id"))
                if other != p.get("id"):
                    overlaps.add((other, p.get("id")))
    for a, b in sorted(overlaps):
        fail(f"panels {ids.get(a)!r} and {ids.get(b)!r} overlap on the grid")
    for i, a in enumerate(d.get("annotations", {}).get("list", [])):
        ds = a.get("datasource")
        if isinstance(ds, dict) and ds.get("type") == "grafana":
            continue
        where = f"annotation {a.get('name')!r}"
        if not is_ds_var(ds):
            fail(f"{where}: datasource is not the ${{datasource}} variable")
        labels = re.findall(r"\{\{\s*(\w+)\s*\}\}",
                            (a.get("titleFormat") or "") + (a.get("textFormat") or ""))
        add(where, f"annotation_{i}", a.get("expr"), labels)
    for name, v in tvars.items():
        if v.get("type") != "query":
            continue
        where = f"variable ${name}"
        if not is_ds_var(v.get("datasource")):
            fail(f"{where}: datasource is not the ${{datasource}} variable")
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", q or "", re.S)
        if not m:
            fail(f"{where}: query {q!r} is not label_values(SELECTOR, LABEL)")
            continue
        add(where, f"variable_{name}", m.group(1), [m.group(2)])
    with open(f"{outdir}/rules.yml", "w", encoding="utf-8") as f:
        f.write("groups:\n  - name: grafana_dashboard\n    rules:\n")
        for where, record, expr, _ in exprs:
            # A JSON string is a valid YAML double-quoted scalar.
            f.write(f"      - record: grafana_dashboard:{record}\n"
                    f"        expr: {json.dumps(expr)}\n")
    with open(f"{outdir}/exprs.tsv", "w", encoding="utf-8") as f:
        for where, record, expr, labels in exprs:
            f.write("\t".join([where, expr, ",".join(labels)]) + "\n")
    print(f"{len(exprs)} expressions from {sum(p.get('type') != 'row' for p in panels)} panels")
    done()


def check_metrics(metrics_path, exprs_path):
    types, samples = {}, {}
    with open(metrics_path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                types[m.group(1)] = m.group(2)
                continue
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
            if not m:
                fail(f"/metrics: cannot read the line {line!r}")
                continue
            labels = set(re.findall(r'(\w+)="(?:[^"\\]|\\.)*"', m.group(3) or ""))
            samples.setdefault(m.group(1), set()).update(labels)
    if not samples:
        fail("/metrics has no samples")
    checked = set()
    with open(exprs_path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    for where, expr, needed in rows:
        metrics, grouping = promql_parts(expr)
        if not metrics:
            fail(f"{where}: no metric name in {expr!r}")
        known = set(TARGET_LABELS)
        for name, matched in metrics:
            if name in OUTSIDE:
                known |= matched
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if types.get(name) in ("histogram", "summary"):
                fail(f"metric {name} ({where}) is a {types[name]}: read {name}_bucket, "
                     f"{name}_sum or {name}_count")
                continue
            if name in types:
                family = name
            elif base != name and types.get(base) == "histogram":
                family = base
            elif base != name and base in types:
                fail(f"metric {name} ({where}): {base} is a {types[base]}, it has no {name}")
                continue
            else:
                fail(f"metric {name} ({where}) is not exported: no family {name} in /metrics")
                continue
            if name not in samples:
                fail(f"metric {name} ({where}): family {family} is declared but has no "
                     f"{name} sample in /metrics")
                continue
            checked.add(family)
            for label in sorted(matched - samples[name] - TARGET_LABELS):
                fail(f"metric {name} ({where}) has no label {label!r} in /metrics")
            known |= samples[name]
        for label in sorted((grouping | set(filter(None, needed.split(",")))) - known):
            fail(f"{where}: label {label!r} is on none of the metrics of {expr!r}")
    print(f"{len(checked)} metric families checked: {' '.join(sorted(checked))}")
    # Not a failure (other work adds metrics): what the engine exports and no panel shows.
    unused = sorted(set(types) - checked)
    if unused:
        print(f"note: on no panel: {' '.join(unused)}")
    done()


if sys.argv[1] == "analyse":
    analyse(sys.argv[2], sys.argv[3])
else:
    check_metrics(sys.argv[2], sys.argv[3])
PY
}

static=$(mktemp -d "/tmp/pt-grafana.XXXXXX")
trap 'rm -rf "$static"' EXIT
sfail() {
    printf 'FAIL: %s\n' "$1" >&2
    exit 1
}

# 1 + 2: structure, then every expression through promtool.
command -v promtool >/dev/null 2>&1 || sfail "promtool is installed (Debian package prometheus)"
command -v jq >/dev/null 2>&1 || sfail "jq is installed"
grafana_py analyse "$dash" "$static" || sfail "deploy/grafana/patterntrack.json: structure (above)"
out=$(promtool check rules "$static/rules.yml" 2>&1) ||
    sfail "promtool check rules on the dashboard's expressions:
$out"
# The same wrapping with a broken expression must fail (else the check above proves nothing).
printf '%s\n' 'groups:' '  - name: control' '    rules:' \
    '      - record: grafana_dashboard:control' \
    '        expr: "sum(rate(patterntrack_flushes_total{job=~\"x\"}))"' >"$static/bad.yml"
if promtool check rules "$static/bad.yml" >/dev/null 2>&1; then
    sfail "promtool check rules accepted rate() of an instant vector"
fi
nexpr=$(wc -l <"$static/exprs.tsv")
# The structure check sees a hard-coded datasource, a repeated id, a target without expr and an
# undefined variable, each named ($p: the indexes of the top level's panels that are not rows).
mkdir "$static/control"
jq '. as $d | [range(0; .panels | length) | select($d.panels[.].type != "row")] as $p
    | .panels[$p[0]].datasource = {type: "prometheus", uid: "P1809F7CD0C75ACF3"}
    | .panels[$p[1]].id = .panels[$p[0]].id
    | .panels[$p[2]].targets[0] |= del(.expr)
    | .panels[$p[3]].targets[0].expr |= sub("\\$job"; "$no_such_var")' "$dash" >"$static/control.json"
if grafana_py analyse "$static/control.json" "$static/control" >"$static/control.out"; then
    sfail "the structure check accepted a broken dashboard"
fi
for want in "not the \${datasource} variable" "is used by" "empty or missing expr" \
    "template variable \$no_such_var is not defined"; do
    grep -qF -- "$want" "$static/control.out" ||
        sfail "the structure check did not report: $want; it said: $(cat "$static/control.out")"
done

# 3: a real engine, events good and bad, a few HTTP requests, then its /metrics.
it_setup grafana
trap 'it_cleanup; rm -rf "$static"' EXIT
port=$(free_port)
url="http://127.0.0.1:$port"
engine_start HTTP_PORT="$port"
up() { curl -sf "$url/health" >/dev/null; }
wait_for 30 up || it_fail "HTTP did not come up on port $port"

# --bad-ratio: not JSON, not UTF-8, not an object, invalid pattern IDs (dead letters), events
# without patterns and flagged ones. No compression, so no 1.5 MB event.
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 3000 --bad-ratio 0.2 --seed 19 \
    --compression none --truth "$IT_DIR/truth.tsv" --quiet >"$IT_DIR/loadgen.log" 2>&1 ||
    it_fail "pt-loadgen failed: $(cat "$IT_DIR/loadgen.log")"
grep -q $'^D\t' "$IT_DIR/truth.tsv" || it_fail "pt-loadgen produced no event that is dead-lettered"
total=$(truth_total "$IT_DIR/truth.tsv")
wait_total "$total" 120 || it_fail "totals did not reach $total (now $(db_total))"

for req in "200 /health" "200 /api/patterns/usage/unknown" "200 /api/patterns/usage/summary" \
    "404 /no/such/route"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$url${req#* }")
    [ "$code" = "${req%% *}" ] || it_fail "GET ${req#* } answered $code, not ${req%% *}"
done

# The series this scenario must have made, all in one scrape.
metrics_ready() {
    curl -sf -o "$IT_DIR/metrics.txt" "$url/metrics" || return 1
    local s
    for s in '^patterntrack_dead_letters_total{' \
        '^patterntrack_http_request_duration_seconds_bucket{route="/api/patterns/usage/summary"' \
        '^patterntrack_http_requests_total{method="GET",route="unmatched",status="404"}' \
        '^usage_tracking_consumer_lag{' '^patterntrack_event_loop_lag_seconds_count [1-9]' \
        '^pattern_usage_update_duration_seconds_count [1-9]'; do
        grep -q -- "$s" "$IT_DIR/metrics.txt" || { echo "no $s in /metrics"; return 1; }
    done
}
wait_for 30 metrics_ready || it_fail "/metrics never held the series of the scenario"
grafana_py metrics "$IT_DIR/metrics.txt" "$static/exprs.tsv" >"$IT_DIR/check.out" || {
    cat "$IT_DIR/check.out" >&2
    it_fail "the dashboard reads metrics or labels the engine does not export (above)"
}
grep '^note:' "$IT_DIR/check.out" || true
families=$(sed -n 's/^\([0-9]*\) metric families checked.*/\1/p' "$IT_DIR/check.out")

# The check names what is missing: a made-up metric, a suffix on a counter, a histogram read
# without its suffix, and a label a series does not carry.
cp "$static/exprs.tsv" "$IT_DIR/control.tsv"
printf '%s\t%s\t\n' \
    control1 'sum(rate(patterntrack_no_such_metric_total{job=~".+"}[1m]))' \
    control2 'rate(patterntrack_flushes_total_count[1m])' \
    control3 'rate(pattern_usage_update_duration_seconds[1m])' \
    control4 'sum by (no_such_label) (rate(patterntrack_flushes_total[1m]))' >>"$IT_DIR/control.tsv"
if grafana_py metrics "$IT_DIR/metrics.txt" "$IT_DIR/control.tsv" >"$IT_DIR/control.out"; then
    it_fail "the metric check accepted made-up metrics"
fi
for want in 'metric patterntrack_no_such_metric_total (control1) is not exported' \
    'metric patterntrack_flushes_total_count (control2): patterntrack_flushes_total is a counter' \
    'metric pattern_usage_update_duration_seconds (control3) is a histogram' \
    "control4: label 'no_such_label'"; do
    grep -qF -- "$want" "$IT_DIR/control.out" ||
        it_fail "the metric check did not report: $want; it said: $(cat "$IT_DIR/control.out")"
done
[ "$(grep -c '^FAIL: ' "$IT_DIR/control.out")" -eq 4 ] ||
    it_fail "the metric check reported more than the 4 made-up names: $(cat "$IT_DIR/control.out")"

# 4: a clean stop.
rc=0
engine_stop || rc=$?
[ "$rc" -eq 0 ] || it_fail "SIGTERM: the engine exited with status $rc"
echo "test_grafana: ok ($nexpr expressions pass promtool check rules; the $families metric" \
    "families they read are in a live engine's /metrics; $total uses counted; clean stop," \
    "$(build_kind) build)"
