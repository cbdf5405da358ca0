#!/usr/bin/env python3
"""Integration test of the HTTP API (section 4 of the seed, plus catalog, ingest, operations).

    python3 tests/integration/test_api.py [PATH/TO/patterntrack]

Needs DATABASE_URL (PostgreSQL from `eval "$(scripts/services up)"`); Kafka is not used. The
binary is argv[1], else $PT_BIN, else build/patterntrack. The test creates its own database
pt_it_api (C collation, so every order is byte order), starts the engine on a free loopback
port with KAFKA_ENABLE_CONSUMER=false and a temporary config (batch_timeout_ms = 100,
http_max_body_bytes = 65536, the three seed topics), seeds data through the API only and
checks every answer against a ground truth computed from what it sent (api_truth.py). Last, it
stops PostgreSQL (scripts/services stop pg) to check the 503 answers, and always starts it
again. Prints `N passed, M failed` and exits 1 on any failure.

Event times are whole hours + 12 h before the next UTC hour (t0), plus up to 50 minutes, so
every one is at least 10 h from a trend window edge (t0 - 7 d, t0 - 14 d) and from a day
boundary of `now - N days`, whenever the test runs.
"""

import concurrent.futures
import datetime as dt
import json
import os
import random
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_harness import (Client, Results, ROOT, Server, engine_binary, free_port,  # noqa
                         fresh_db, metric, parse_prometheus, poll, q, run_suite, services)
from api_truth import (DAY, HOUR, Batch, Truth, action_event, days_between, iso, now,  # noqa
                       parse_iso, t0_of)

R = Results()
TOPICS = ["agent-manifest-injections", "agent-actions", "agent-routing-decisions"]
MAX_BODY = 65536
CONFIG = """-- written by tests/integration/test_api.py
return {
    topics = {
        ["agent-manifest-injections"] = "rules/agent-manifest-injections.lua",
        ["agent-actions"] = "rules/agent-actions.lua",
        ["agent-routing-decisions"] = "rules/agent-routing-decisions.lua",
    },
    batch_timeout_ms = 100,
    http_max_body_bytes = %d,
    log_level = "warn",
}
""" % MAX_BODY

# The seed's ranged query parameters (and ours on /unknown): path, name, min, max, default.
RANGED = [
    ("/api/patterns/usage/top", "limit", 1, 100, 20),
    ("/api/patterns/usage/unused", "min_age_days", 1, 365, 30),
    ("/api/patterns/usage/stale", "days_inactive", 1, 365, 90),
    ("/api/patterns/usage/by-agent/{agent_name}", "limit", 1, 200, 50),
    ("/api/patterns/usage/unknown", "limit", 1, 1000, 100),
]
# Every route the contract names (method, path template).
CONTRACT = {
    ("GET", "/api/patterns/usage/{pattern_id}"), ("GET", "/api/patterns/usage/top"),
    ("GET", "/api/patterns/usage/unused"), ("GET", "/api/patterns/usage/stale"),
    ("GET", "/api/patterns/usage/by-agent/{agent_name}"), ("GET", "/api/patterns/usage/summary"),
    ("GET", "/api/patterns/usage/unknown"), ("PUT", "/api/patterns/{pattern_id}"),
    ("POST", "/api/patterns"), ("POST", "/api/patterns/usage/events"), ("GET", "/health"),
    ("GET", "/metrics"), ("GET", "/openapi.json"),
}
STATS_FIELDS = ["pattern_id", "pattern_name", "pattern_type", "usage_count", "last_used_at",
                "used_by_agents", "agent_count", "trend", "trend_percentage", "first_used_at",
                "days_since_last_use"]

SP = "a/b c"  # a slash and a space
UNI = "\u00fcn\u00efc\u00f8d\u00e9-\u6a21\u5f0f"  # UTF-8, 2- and 3-byte sequences
LONG = "L" * 255  # the longest valid ID
LONG256 = "L" * 256
AGENTS = ["agent-alpha", "agent-beta", "agent with space", "agent/slash",
          "ag\u00ebnt-\u00fc", None]

T0 = t0_of(now())


def ago(days, minutes=0, seconds=0, micro=0):
    """A time `days` whole days + 12 h before the t0 of the test's start, plus an offset."""
    return T0 - (24 * days + 12) * HOUR + dt.timedelta(minutes=minutes, seconds=seconds,
                                                      microseconds=micro)


class Ctx:
    def __init__(self, client, truth):
        self.c = client
        self.t = truth
        self.variant = 0

    def next_variant(self):
        self.variant += 1
        return self.variant


# ---------------------------------------------------------------- comparison helpers

def in_range(got, rng, slack_ms=2):
    """got: an ISO string from the API; rng: (lo, hi) datetimes."""
    t = parse_iso(got)
    if t is None:
        return False
    if rng[0] == rng[1]:
        return t == rng[0]
    slack = dt.timedelta(milliseconds=slack_ms)
    return rng[0] - slack <= t <= rng[1] + slack


def stats_mismatches(got, exp, truth, now_lo, now_hi, include_trend=True):
    """Differences between one PatternUsageStats answer and the truth, as strings."""
    bad = []
    if not isinstance(got, dict):
        return ["not an object: %r" % (got,)]
    for f in STATS_FIELDS:
        if f not in got:
            bad.append("missing field " + f)
    for f in ("pattern_id", "pattern_name", "pattern_type", "usage_count", "used_by_agents",
              "agent_count", "registered"):
        if got.get(f) != exp[f]:
            bad.append("%s: got %r want %r" % (f, got.get(f), exp[f]))
    for f in ("last_used_at", "first_used_at"):
        if exp[f] is None:
            if got.get(f) is not None:
                bad.append("%s: got %r want null" % (f, got.get(f)))
        elif not in_range(got.get(f), exp[f]):
            bad.append("%s: got %r want %s" % (f, got.get(f), [iso(x) for x in exp[f]]))
    last = exp["last_used_at"]
    dsl = got.get("days_since_last_use")
    if last is None:
        if dsl is not None:
            bad.append("days_since_last_use: got %r want null" % (dsl,))
    else:
        lo, hi = days_between(now_lo, last[1]), days_between(now_hi, last[0])
        if not (isinstance(dsl, int) and lo <= dsl <= hi):
            bad.append("days_since_last_use: got %r want %s" % (dsl, lo if lo == hi else
                                                               "%d..%d" % (lo, hi)))
    if include_trend:
        want = {truth.trend(exp["pattern_id"], now_lo), truth.trend(exp["pattern_id"], now_hi)}
    else:
        want = {("insufficient_data", 0.0)}
    tp = got.get("trend_percentage")
    if (got.get("trend"), tp) not in want or not isinstance(tp, float):
        bad.append("trend: got %r %r want %s" % (got.get("trend"), tp, " or ".join(
            "%s %r" % w for w in sorted(want))))
    return bad


def get_timed(ctx, path):
    lo = now()
    r = ctx.c.get(path)
    return r, lo, now()


def check_list(name, ctx, path, want_ids, extra=None, include_trend=True):
    """GET a list of PatternUsageStats; checks the IDs in order and every item."""
    r, lo, hi = get_timed(ctx, path)
    if not R.check(name + ": 200 JSON list", r.status == 200 and isinstance(r.json, list), r):
        return None
    got_ids = [x.get("pattern_id") if isinstance(x, dict) else x for x in r.json]
    R.eq(name + ": pattern IDs in order", got_ids, want_ids)
    bad = []
    for item in r.json:
        pid = item.get("pattern_id") if isinstance(item, dict) else None
        if pid not in ctx.t.catalog:
            continue
        m = stats_mismatches(item, ctx.t.stats(pid), ctx.t, lo, hi, include_trend)
        if extra:
            m += extra(pid, item, lo, hi)
        bad += ["%r: %s" % (pid, x) for x in m]
    R.check(name + ": every item's statistics", not bad, "\n".join(bad[:15]))
    return r


def qs(**kw):
    parts = ["%s=%s" % (k, q(str(v))) for k, v in kw.items() if v is not None]
    return ("?" + "&".join(parts)) if parts else ""


def check_422(name, r, param):
    ok = (r.status == 422 and r.is_json() and isinstance(r.json.get("detail"), list)
          and len(r.json["detail"]) >= 1)
    if ok:
        d = r.json["detail"][0]
        ok = (isinstance(d, dict) and d.get("loc") == ["query", param]
              and isinstance(d.get("msg"), str) and d["msg"] != ""
              and isinstance(d.get("type"), str) and d["type"] != "")
    return R.check(name + ": 422 naming query parameter " + param, ok, r)


# ---------------------------------------------------------------- expected answers

def check_pattern(ctx, pid, include_trend=None, label=""):
    path = "/api/patterns/usage/" + q(pid)
    if include_trend is not None:
        path += "?include_trend=" + include_trend
    r, lo, hi = get_timed(ctx, path)
    name = "GET /api/patterns/usage/%s%s" % (pid[:40], label)
    if not R.check(name + ": 200 JSON", r.status == 200 and r.is_json(), r):
        return
    it = include_trend is None or include_trend.lower() not in ("false", "0", "off", "no")
    bad = stats_mismatches(r.json, ctx.t.stats(pid), ctx.t, lo, hi, it)
    R.check(name + ": statistics", not bad, "\n".join(bad))


def check_top(ctx, limit=None, pattern_type=None):
    want = ctx.t.top(limit or 20, pattern_type)
    check_list("GET /top%s" % qs(limit=limit, pattern_type=pattern_type), ctx,
               "/api/patterns/usage/top" + qs(limit=limit, pattern_type=pattern_type), want)


def check_top_days(ctx, days, limit=100):
    """/top?days=N ranks by usage in the last N days (hour buckets from now - N days)."""
    cut = now() - days * DAY
    counts = {}
    for pid in ctx.t.ids():
        n = sum(1 for _, lo, _ in ctx.t.uses.get(pid, []) if lo >= cut)
        if n:
            counts[pid] = n
    want = sorted(counts, key=lambda i: (-counts[i], i))[:limit]
    r = ctx.c.get("/api/patterns/usage/top?limit=%d&days=%d" % (limit, days))
    if not R.check("GET /top?days=%d: 200" % days, r.status == 200, r):
        return
    R.eq("GET /top?days=%d: patterns in order" % days, [x["pattern_id"] for x in r.json], want)
    R.eq("GET /top?days=%d: usage in the window" % days,
         [x.get("usage_in_window") for x in r.json], [counts[i] for i in want])


def check_unused(ctx, days=None):
    at = now()
    want = ctx.t.unused(days or 30, at)

    def extra(pid, item, lo, hi):
        c = ctx.t.catalog[pid]["created"]
        bad = []
        if not in_range(item.get("created_at"), c):
            bad.append("created_at: got %r want %s" % (item.get("created_at"), iso(c[0])))
        if item.get("age_days") not in (days_between(lo, c[1]), days_between(hi, c[0])):
            bad.append("age_days: got %r want %d" % (item.get("age_days"),
                                                     days_between(lo, c[1])))
        return bad
    check_list("GET /unused%s" % qs(min_age_days=days), ctx,
               "/api/patterns/usage/unused" + qs(min_age_days=days), want, extra)


def check_stale(ctx, days=None):
    want = ctx.t.stale(days or 90, now())
    check_list("GET /stale%s" % qs(days_inactive=days), ctx,
               "/api/patterns/usage/stale" + qs(days_inactive=days), want)


def check_by_agent(ctx, agent, limit=None):
    want, mine = ctx.t.by_agent(agent, limit or 50)

    def extra(pid, item, lo, hi):
        first, last = ctx.t.first_last(pid, agent)
        bad = []
        if item.get("agent_usage_count") != mine.get(pid):
            bad.append("agent_usage_count: got %r want %r" % (item.get("agent_usage_count"),
                                                              mine.get(pid)))
        if not in_range(item.get("agent_first_used_at"), first):
            bad.append("agent_first_used_at: got %r" % (item.get("agent_first_used_at"),))
        if not in_range(item.get("agent_last_used_at"), last):
            bad.append("agent_last_used_at: got %r" % (item.get("agent_last_used_at"),))
        return bad
    check_list("GET /by-agent/%s%s" % (agent, qs(limit=limit)), ctx,
               "/api/patterns/usage/by-agent/" + q(agent) + qs(limit=limit), want, extra)


def check_unknown(ctx, limit=None):
    want = ctx.t.unknown(limit or 100)
    name = "GET /unknown%s" % qs(limit=limit)
    r = ctx.c.get("/api/patterns/usage/unknown" + qs(limit=limit))
    if not R.check(name + ": 200 JSON list", r.status == 200 and isinstance(r.json, list), r):
        return
    R.eq(name + ": pattern IDs in order", [x.get("pattern_id") for x in r.json], want)
    bad = []
    for x in r.json:
        pid = x.get("pattern_id")
        if pid not in ctx.t.catalog:
            continue
        first, last = ctx.t.first_last(pid)
        if x.get("count") != ctx.t.count(pid):
            bad.append("%s count %r want %r" % (pid, x.get("count"), ctx.t.count(pid)))
        if not in_range(x.get("first_seen"), first) or not in_range(x.get("last_seen"), last):
            bad.append("%s first/last_seen %r %r" % (pid, x.get("first_seen"),
                                                     x.get("last_seen")))
    R.check(name + ": counts and times", not bad, "\n".join(bad[:10]))


def check_summary(ctx, label=""):
    r = ctx.c.get("/api/patterns/usage/summary")
    if R.check("GET /summary%s: 200 JSON" % label, r.status == 200 and r.is_json(), r):
        R.eq("GET /summary%s: every field" % label, r.json, ctx.t.summary())
        for f in ("avg_usage_per_pattern", "usage_rate"):
            R.check("GET /summary%s: %s is a number" % (label, f),
                    isinstance(r.json.get(f), float), r.json.get(f))


def verify_all(ctx, label):
    """Every read endpoint against the truth."""
    t = ctx.t
    check_summary(ctx, label)
    check_top(ctx)
    check_top(ctx, 100)
    check_top(ctx, 7)
    check_top_days(ctx, 7)
    check_top_days(ctx, 30)
    for raw in ("0", "366", "abc", "", "1.5"):
        check_422("GET /top?days=%r" % raw, ctx.c.get("/api/patterns/usage/top?days=" + q(raw)),
                  "days")
    for v in (1, 365):
        r = ctx.c.get("/api/patterns/usage/top?days=%d" % v)
        R.check("GET /top?days=%d: 200" % v, r.status == 200, r)
    for pt_ in ("code", "design", "ops", "unknown", "no-such-type"):
        check_top(ctx, 100, pt_)
    for pid in t.ids():
        check_pattern(ctx, pid, label=label)
    for d in (None, 1, 5, 45, 90, 365):
        check_unused(ctx, d)
    for d in (None, 1, 5, 15, 365):
        check_stale(ctx, d)
    for a in t.agents():
        check_by_agent(ctx, a)
    check_by_agent(ctx, "nobody-at-all")
    check_unknown(ctx)
    check_unknown(ctx, 1000)


# ---------------------------------------------------------------- phases

def phase_health_start(ctx):
    r = ctx.c.get("/health")
    R.check("GET /health: 200 JSON", r.status == 200 and r.is_json(), r)
    j = r.json or {}
    R.eq("GET /health: status", j.get("status"), "ok")
    R.eq("GET /health: postgresql.reachable", (j.get("postgresql") or {}).get("reachable"), True)
    R.eq("GET /health: kafka.enabled (consumer off)", (j.get("kafka") or {}).get("enabled"),
         False)
    R.check("GET /health: version, uptime_seconds, ingest",
            isinstance(j.get("version"), str) and isinstance(j.get("uptime_seconds"), int)
            and isinstance(j.get("ingest"), dict), j)
    h = ctx.c.call("HEAD", "/health")
    R.check("HEAD /health: 200 without a body", h.status == 200 and h.body == b"", h)


def register(ctx, name, method, path, body, patterns, ctype=None):
    lo = now()
    r = ctx.c.call(method, path, body=body, ctype=ctype)
    hi = now()
    if R.check(name + ": 200 JSON", r.status == 200 and r.is_json(), r):
        R.eq(name + ": answer", r.json, ctx.t.register(patterns, lo, hi))


def phase_catalog(ctx):
    puts = [
        ("p-inc", "Increasing pattern", "code", 60), ("p-dec", None, "code", 61),
        ("p-stable", "Stable", "design", 62), ("p-edge-up", None, "design", 63),
        ("p-edge-down", None, "design", 64), ("p-round", None, "ops", 65),
        ("p-insuff", None, "ops", 66), ("p-old", "Old one", "ops", 67),
        ("p-ancient", None, "code", 200), ("p-fossil", None, "code", 500),
        (SP, "Slash and space", "design", 68), (UNI, "\u00dcnicode \u6a21\u5f0f", "code", 69),
        (LONG, None, "ops", 70), ("p-now", None, "ops", None),
    ]
    for pid, pname, ptype, days in puts:
        body = {}
        if pname is not None:
            body["pattern_name"] = pname
        if ptype is not None:
            body["pattern_type"] = ptype
        if days is not None:
            body["created_at"] = iso(ago(days, minutes=days % 50))
        if pid == "p-inc":
            body["pattern_id"] = pid  # the same ID in the body is allowed
        p = dict(body, pattern_id=pid)
        register(ctx, "PUT /api/patterns/%s" % pid[:30], "PUT", "/api/patterns/" + q(pid), body,
                 [p])
    # A second PUT of the same pattern updates it and keeps what it does not name.
    register(ctx, "PUT /api/patterns/p-dec (update)", "PUT", "/api/patterns/p-dec",
             {"pattern_name": "Decreasing pattern"},
             [{"pattern_id": "p-dec", "pattern_name": "Decreasing pattern"}])
    arr = [
        {"pattern_id": "u-fossil", "pattern_type": "code", "created_at": iso(ago(400, 1))},
        {"pattern_id": "u-100", "pattern_name": "Hundred", "pattern_type": "design",
         "created_at": iso(ago(100, 2))},
        {"pattern_id": "u-keep", "pattern_type": "design", "created_at": iso(ago(95, 2))},
        {"pattern_id": "u-40", "pattern_type": "ops", "created_at": iso(ago(40, 3))},
        {"pattern_id": "u-10", "pattern_type": "ops", "created_at": iso(ago(10, 4))},
        {"pattern_id": "u-2", "pattern_type": "code", "created_at": iso(ago(2, 5))},
        {"pattern_id": "p-manifest", "pattern_type": "code", "created_at": iso(ago(50, 6))},
        {"pattern_id": "t-unknown", "pattern_type": "unknown", "created_at": iso(ago(45, 7))},
        {"pattern_id": "p-inc", "pattern_type": "code"},  # already there: updated
    ]
    register(ctx, "POST /api/patterns (array)", "POST", "/api/patterns", arr, arr)
    nd = [
        {"pattern_id": "n-1", "pattern_name": "From NDJSON", "pattern_type": "design",
         "created_at": ago(80, 8).astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()},
        {"pattern_id": "p-nocreated"},
    ]
    body = "\n".join(json.dumps(p) for p in nd) + "\n\n"
    nd[0]["created_at"] = iso(ago(80, 8))
    register(ctx, "POST /api/patterns (NDJSON)", "POST", "/api/patterns", body, nd,
             ctype="application/x-ndjson")
    register(ctx, "POST /api/patterns (empty array)", "POST", "/api/patterns", [], [])

    # Rejected requests change nothing.
    bad = [
        ("PUT", "/api/patterns/x-1", {"pattern_id": "x-2"}, None, "differs"),
        ("PUT", "/api/patterns/x-2", '"a string"', "application/json", None),
        ("PUT", "/api/patterns/x-3", "[1, 2]", "application/json", None),
        ("PUT", "/api/patterns/x-4", "[]", "application/json", None),
        ("PUT", "/api/patterns/x-5", {"created_at": "yesterday"}, None, "created_at"),
        ("PUT", "/api/patterns/x-6", {"pattern_type": "t" * 101}, None, "pattern_type"),
        ("PUT", "/api/patterns/x-7", {"pattern_name": 5}, None, "pattern_name"),
        ("PUT", "/api/patterns/" + LONG256, {}, None, "pattern_id"),
        ("POST", "/api/patterns", [{"pattern_id": "x-1"}, {"pattern_id": "x-1"}], None,
         "twice"),
        ("POST", "/api/patterns", [{"pattern_id": "x-1"}, {"pattern_name": "no id"}], None,
         "pattern 2"),
        ("POST", "/api/patterns", {"pattern_id": "x-1"}, None, "array"),
        ("POST", "/api/patterns", [{"pattern_id": ""}], None, "pattern_id"),
    ]
    for method, path, body, ctype, word in bad:
        lo = now()
        r = ctx.c.call(method, path, body=body, ctype=ctype)
        text = body if isinstance(body, str) else json.dumps(body)
        R.check("%s %s %s: 400 JSON" % (method, path[:40], text[:40]),
                r.status == 400 and r.is_json() and isinstance(r.json.get("detail"), str), r)
        if r.status == 200 and method == "PUT":
            # Wrongly accepted: follow what the server stored so that one bug fails one check.
            ctx.t.register([{"pattern_id": path.rsplit("/", 1)[1]}], lo, now())
        if word and r.is_json():
            R.check("%s %s %s: detail names the problem (%s)" % (method, path[:40], text[:40],
                                                                  word),
                    word in str(r.json.get("detail")), r)
    r = ctx.c.call("PUT", "/api/patterns/x-1", body='{"pattern_name": "x",}',
                   ctype="application/json")
    R.check("PUT invalid JSON: 400 whose detail says where",
            r.status == 400 and r.is_json() and re.search(r"\d", str(r.json.get("detail"))), r)
    r = ctx.c.call("POST", "/api/patterns", body='{"pattern_id": "x-1"}\n{"pattern_id": \n',
                   ctype="application/x-ndjson")
    R.check("POST /api/patterns NDJSON with a bad line: 400 naming line 2",
            r.status == 400 and r.is_json() and "line 2" in str(r.json.get("detail")), r)


def send(ctx, name, batch, query=None):
    body, ctype = batch.body()
    if batch.fmt == "ndjson":
        ctype = "application/x-ndjson"
    path = "/api/patterns/usage/events?topic=" + q(query or batch.topic)
    lo = now()
    try:
        r = ctx.c.call("POST", path, body=body, ctype=ctype, timeout=15)
    except OSError as e:
        # The engine holds the events anyway; the next POST gets them flushed.
        R.check(name + ": answered within 15 s", False, repr(e))
        ctx.t.ingested(batch, lo, now())
        return None
    hi = now()
    if R.check(name + ": 200 JSON", r.status == 200 and r.is_json(), r):
        R.eq(name + ": accepted / dead_lettered / patterns_counted", r.json,
             batch.expected_answer())
        ctx.t.ingested(batch, lo, hi)
    return r


def add_uses(ctx, batch, pid, days_list):
    for d in days_list:
        v = ctx.next_variant()
        t = ago(d, minutes=v % 50, seconds=(v * 7) % 60, micro=(v * 123457) % 1000000
                if v % 3 == 0 else 0)
        agent = AGENTS[v % len(AGENTS)]
        batch.event(action_event([pid], agent, t, v), [pid], agent, t)


def phase_events(ctx):
    b = Batch("agent-actions", "array")
    add_uses(ctx, b, "p-inc", [0, 1, 2, 3, 4, 8, 9])  # 5 vs 2: increasing 150.0
    add_uses(ctx, b, "p-dec", [5, 7, 8, 10, 12])  # 1 vs 4: decreasing 75.0
    add_uses(ctx, b, "p-stable", [1, 3, 5, 8, 10, 12])  # 3 vs 3: stable 0.0
    add_uses(ctx, b, "p-edge-up", [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3] + [7, 8, 9, 10, 11] * 2)
    add_uses(ctx, b, "p-edge-down", [0, 1, 2, 3, 4, 5, 6, 0, 1] + [7, 8, 9, 10, 11, 12, 13] + [
        7, 8, 9])  # 9 vs 10: -10 %, stable 10.0
    add_uses(ctx, b, "p-round", [2, 9, 10, 11])  # 1 vs 3: decreasing 66.67
    add_uses(ctx, b, "p-insuff", [0, 6])
    add_uses(ctx, b, "p-old", [18, 19])
    add_uses(ctx, b, "p-ancient", [120])
    add_uses(ctx, b, "p-fossil", [400])
    add_uses(ctx, b, SP, [2, 9])
    add_uses(ctx, b, UNI, [1, 2, 13])
    add_uses(ctx, b, "ghost-a", [1, 4, 15])
    add_uses(ctx, b, "late-reg", [2, 11])
    # One event, three references, one repeated: two uses.
    t = ago(3, 17, 3)
    b.event({"agent_name": "agent-alpha", "patterns": [LONG, "ghost-b", LONG],
             "timestamp": iso(t)}, [LONG, "ghost-b", LONG], "agent-alpha", t)
    for text in ("5", "null", '"just a string"', "[1, 2]", "true"):
        b.dead(text, "not an object")
    send(ctx, "POST events (JSON array)", b)

    b = Batch("agent-actions", "ndjson")
    t = ago(16, 21)
    b.event({"agent_name": "agent-beta", "patterns": ["ghost-b"], "timestamp": iso(t)},
            ["ghost-b"], "agent-beta", t)
    b.dead("not-json", "not json")
    b.blank()
    t = ago(5, 22, 1)
    b.event({"agent_name": "agent-beta", "patterns": ["", "ghost-b", LONG256],
             "timestamp": iso(t)}, ["", "ghost-b", LONG256], "agent-beta", t)
    b.dead("{broken", "not json")
    b.event({"agent_name": "agent-zero", "note": "no patterns here"}, [], "agent-zero", None)
    t = ago(0, 23, 2)
    b.items.append((json.dumps({"patterns": ["p-insuff", "p-insuff"], "timestamp": iso(t)})
                    + "\r", {"ids": ["p-insuff", "p-insuff"], "agent": "unknown", "t": t}))
    b.dead("[]", "not an object")
    send(ctx, "POST events (NDJSON)", b)

    b = Batch("agent-actions", "object")
    bulk = ["bulk-%03d" % i for i in range(60)]
    t = ago(1, 30)
    b.event({"agent_name": "bulk-agent", "patterns": bulk, "timestamp": iso(t)}, bulk,
            "bulk-agent", t)
    send(ctx, "POST events (one JSON object, 60 patterns)", b)

    b = Batch("agent-manifest-injections", "object")
    t = ago(2, 31)
    b.event({"agent_name": "agent-alpha", "timestamp": iso(t),
             "patterns": {"available": [{"name": "p-manifest"}, {"name": "ghost-a"}],
                          "total_count": 2}}, ["p-manifest", "ghost-a"], "agent-alpha", t)
    send(ctx, "POST events (manifest topic)", b)

    b = Batch("agent-actions", "array")
    for agent in ("agent-alpha", None, "agent-beta"):
        b.event(action_event(["p-now"], agent, None, 0), ["p-now"], agent, None)
    send(ctx, "POST events (no timestamps: arrival time)", b)

    # Nothing to count: an empty array answers at once.
    b = Batch("agent-actions", "array")
    send(ctx, "POST events (empty array)", b)

    # The fixture covers every trend outcome, including both 10 % edges.
    trends = {ctx.t.trend(p, now()) for p in ctx.t.ids()}
    R.check("fixture: every trend outcome is exercised",
            {("increasing", 150.0), ("decreasing", 75.0), ("decreasing", 66.67),
             ("stable", 0.0), ("stable", 10.0), ("insufficient_data", 0.0)} <= trends,
            sorted(trends))

    # Ingest errors.
    r = ctx.c.call("POST", "/api/patterns/usage/events", body=[{"patterns": ["x"]}])
    check_422("POST events without topic", r, "topic")
    r = ctx.c.call("POST", "/api/patterns/usage/events?topic=no-such-topic", body=[])
    check_422("POST events to an unknown topic", r, "topic")
    r = ctx.c.call("POST", "/api/patterns/usage/events?topic=" + "t" * 250, body=[])
    check_422("POST events with a 250-character topic", r, "topic")
    r = ctx.c.call("POST", "/api/patterns/usage/events?topic=agent-actions",
                   body='[{"patterns": ["x"]}, {"patterns": ', ctype="application/json")
    R.check("POST events invalid JSON: 400 whose detail says where",
            r.status == 400 and r.is_json() and re.search(r"\d", str(r.json.get("detail"))), r)
    for text in ('"a string"', "42"):
        r = ctx.c.call("POST", "/api/patterns/usage/events?topic=agent-actions", body=text,
                       ctype="application/json")
        R.check("POST events body %s: 400 JSON" % text, r.status == 400 and r.is_json(), r)


def phase_catalog_after_events(ctx):
    check_unknown(ctx)
    R.check("late-reg is unknown before it is registered",
            "late-reg" in ctx.t.unknown(1000), "fixture")
    register(ctx, "PUT /api/patterns/late-reg (seen in events first)", "PUT",
             "/api/patterns/late-reg",
             {"pattern_type": "design", "created_at": iso(ago(71, 9))},
             [{"pattern_id": "late-reg", "pattern_type": "design",
               "created_at": iso(ago(71, 9))}])
    check_unknown(ctx)
    check_pattern(ctx, "late-reg", label=" (registered)")
    # A request in which only some entries give created_at must keep the others' creation
    # time (u-keep stays 95 days old and so unused at min_age_days = 90).
    mixed = [{"pattern_id": "u-keep", "pattern_name": "Keeps its age"},
             {"pattern_id": "u-late", "pattern_type": "ops", "created_at": iso(ago(20, 10))}]
    register(ctx, "POST /api/patterns (created_at on some entries only)", "POST",
             "/api/patterns", mixed, mixed)
    check_unused(ctx, 90)
    # Put u-keep's creation time back either way, so that one bug fails one check.
    p = {"pattern_id": "u-keep", "created_at": iso(ago(95, 2))}
    register(ctx, "PUT /api/patterns/u-keep (created_at again)", "PUT", "/api/patterns/u-keep",
             {"created_at": p["created_at"]}, [p])


def phase_edges(ctx):
    """0, 1, max, max+1, not a number, empty, negative, fraction for every ranged parameter."""
    agent = "agent-alpha"
    checkers = {
        "/api/patterns/usage/top": lambda v: check_top(ctx, v),
        "/api/patterns/usage/unused": lambda v: check_unused(ctx, v),
        "/api/patterns/usage/stale": lambda v: check_stale(ctx, v),
        "/api/patterns/usage/by-agent/{agent_name}": lambda v: check_by_agent(ctx, agent, v),
        "/api/patterns/usage/unknown": lambda v: check_unknown(ctx, v),
    }
    for tmpl, name, lo, hi, default in RANGED:
        path = tmpl.replace("{agent_name}", agent)
        for raw in (str(lo - 1), str(hi + 1), "abc", "", "-1", "1.5", "1e2", "0x10",
                    "99999999999999999999"):
            r = ctx.c.get("%s?%s=%s" % (path, name, q(raw)))
            check_422("GET %s?%s=%r" % (tmpl, name, raw), r, name)
        for v in (lo, hi, None):
            checkers[tmpl](v)
        r = ctx.c.get("%s?%s=%d" % (path, name, lo + 1))
        R.check("GET %s?%s=%d: 200" % (tmpl, name, lo + 1), r.status == 200, r)
    check_by_agent(ctx, "bulk-agent")  # default 50 of its 60
    check_by_agent(ctx, "bulk-agent", 200)
    check_unknown(ctx, 3)
    # include_trend: a boolean
    for raw in ("false", "0", "true", "1", "FALSE"):
        check_pattern(ctx, "p-inc", include_trend=raw, label="?include_trend=" + raw)
    for raw in ("maybe", "", "2"):
        r = ctx.c.get("/api/patterns/usage/p-inc?include_trend=" + q(raw))
        check_422("GET /p-inc?include_trend=%r" % raw, r, "include_trend")
    # pattern_type: at most 100 characters
    r = ctx.c.get("/api/patterns/usage/top?pattern_type=" + "t" * 101)
    check_422("GET /top?pattern_type=<101 characters>", r, "pattern_type")
    r = ctx.c.get("/api/patterns/usage/top?pattern_type=" + "t" * 100)
    R.check("GET /top?pattern_type=<100 characters>: 200 []", r.status == 200 and r.json == [],
            r)
    # The path parameter does not hide a bad query parameter.
    r = ctx.c.get("/api/patterns/usage/by-agent/x?limit=0")
    check_422("GET /by-agent/x?limit=0", r, "limit")


def phase_errors(ctx):
    r = ctx.c.get("/api/patterns/usage/no-such-pattern")
    R.check("GET unknown pattern: 404 JSON with detail",
            r.status == 404 and r.is_json() and isinstance(r.json.get("detail"), str), r)
    for path in ("/nope", "/api", "/api/patterns/usage/a/b/c", "/api/patterns/usage/by-agent/"
                 "a/b", "/metrics/x"):
        r = ctx.c.get(path)
        R.check("GET %s: 404 JSON" % path, r.status == 404 and r.is_json(), r)
    for method, path in (("DELETE", "/api/patterns/usage/summary"), ("POST", "/health"),
                         ("GET", "/api/patterns"), ("PATCH", "/api/patterns/p-inc"),
                         ("PUT", "/api/patterns/usage/events"), ("POST", "/openapi.json"),
                         ("DELETE", "/api/patterns/p-inc"), ("GET", "/api/patterns/p-inc")):
        r = ctx.c.call(method, path)
        R.check("%s %s: 405 JSON" % (method, path), r.status == 405 and r.is_json(), r)
    # Body size: exactly the limit is accepted, one byte more is 413.
    body = "[" + " " * (MAX_BODY - 2) + "]"
    r = ctx.c.call("POST", "/api/patterns/usage/events?topic=agent-actions", body=body,
                   ctype="application/json")
    R.check("POST events with a body of exactly http_max_body_bytes: 200", r.status == 200, r)
    for path in ("/api/patterns/usage/events?topic=agent-actions", "/api/patterns"):
        big = b"[" + b" " * MAX_BODY + b"]"
        st, raw = ctx.c.raw(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Type: application/json\r\nContent-Length: "
                            + str(len(big)).encode() + b"\r\nConnection: close\r\n\r\n" + big)
        R.eq("POST %s with a body over http_max_body_bytes: 413" % path, st, 413)
    # Percent-encoded path parameters.
    for pid in (SP, UNI, LONG):
        check_pattern(ctx, pid, label=" (percent-encoded)")
    for agent in ("agent with space", "agent/slash", "ag\u00ebnt-\u00fc"):
        check_by_agent(ctx, agent)
    r = ctx.c.get("/api/patterns/usage/sp+ace")
    R.check("GET /api/patterns/usage/sp+ace: a + in a path is not a space (404)",
            r.status == 404, r)
    r = ctx.c.get("/api/patterns/usage/top?limit=100&pattern_type=Slash+and+space")
    R.check("GET /top?pattern_type=a+b: + in a query is a space (200)", r.status == 200, r)
    # Bad encodings.
    for path in ("/api/patterns/usage/%FF", "/api/patterns/usage/%C3", "/api/patterns/usage/%00",
                 "/api/patterns/usage/%ZZ", "/api/patterns/usage/abc%2",
                 "/api/patterns/usage/abc%", "/api/patterns/usage/by-agent/%E6%A8",
                 "/api/patterns/usage/top?limit=%FF", "/api/patterns/usage/top?pattern_type=%C3",
                 "/api/patterns/usage/top?pattern_type=%ZZ", "/api/patterns/usage/top?limit=1%"):
        r = ctx.c.get(path)
        R.check("GET %s: 400 JSON" % path, r.status == 400 and r.is_json(), r)
    st, raw = ctx.c.raw(b"GET /api/patterns/usage/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Connection: close\r\n\r\n")
    R.eq("GET with raw non-UTF-8 bytes in the path: 400", st, 400)
    phase_found_by_schemathesis(ctx)


def phase_found_by_schemathesis(ctx):
    """What tests/integration/test_schemathesis.py found, kept here whatever its seed."""
    # A query parameter without a name, or without '=', is not malformed (FastAPI reads both).
    for query in ("=0&limit=1", "limit=1&flag", "limit=1&=&&", "pattern_type=a%0D%0Ab&limit=1"):
        r = ctx.c.get("/api/patterns/usage/top?" + query)
        R.check("GET /top?%s: 200" % query, r.status == 200 and r.is_json(), r)
    r = ctx.c.get("/api/patterns/usage/top?li%6Dit=0")
    check_422("GET /top?li%6Dit=0 (a percent-encoded name)", r, "limit")
    # TRACE reaches the router (JSON 405), not libevent's HTML 501.
    r = ctx.c.call("TRACE", "/api/patterns/usage/summary")
    R.check("TRACE /api/patterns/usage/summary: 405 JSON", r.status == 405 and r.is_json(), r)
    # libevent reads no body after HEAD or TRACE: such a request is refused and its connection
    # closed, so the body is never run as a request of its own.
    inner = b"POST /api/patterns HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]"
    for m in (b"HEAD", b"TRACE"):
        st, raw = ctx.c.raw(m + b" /api/patterns/usage/summary HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: " + str(len(inner)).encode() + b"\r\n\r\n" + inner)
        R.check("%s with a body: 400, connection closed, the body not run as a request"
                % m.decode(), st == 400 and raw.count(b"HTTP/1.1 ") == 1
                and b"connection: close" in raw.lower(), raw[:600])
    # Catalog strings PostgreSQL cannot hold, and times it cannot read, are 400 (were 500).
    for bad in ({"pattern_id": "nul\u0000id"}, {"pattern_id": "p-x", "pattern_name": "a\u0000"},
                {"pattern_id": "p-x", "pattern_type": "\u0000"},
                {"pattern_id": "p-x", "created_at": "0000-01-01T00:00:00Z"},
                {"pattern_id": "p-x", "created_at": "9999-12-31T23:59:59-23:59"}):
        r = ctx.c.call("POST", "/api/patterns", [bad])
        R.check("POST /api/patterns %s: 400 JSON" % json.dumps(bad), r.status == 400
                and r.is_json() and isinstance(r.json.get("detail"), str), r)
    r = ctx.c.call("POST", "/api/patterns", b'[{"pattern_id": "p-x", "pattern_type": "\xff"}]',
                   ctype="application/json")
    R.check("POST /api/patterns with a pattern_type not UTF-8: 400", r.status == 400, r)
    # Time series in the first millennium: four-digit years; none outside years 1..9999.
    r = ctx.c.get("/api/patterns/usage/p-inc/timeseries?to=0911-01-04T05%3A59%3A15Z")
    R.check("GET /p-inc/timeseries?to=0911-...: 200, years of four digits", r.status == 200
            and r.json.get("from") == "0910-12-28T05:00:00Z"
            and r.json.get("to") == "0911-01-04T06:00:00Z"
            and r.json["points"][0]["start"] == "0910-12-28T05:00:00Z", r)
    r = ctx.c.get("/api/patterns/usage/p-inc/timeseries?to=0001-01-02T00%3A00%3A00Z")
    check_422("GET /p-inc/timeseries?to=0001-01-02 (from in year 0)", r, "from")
    r = ctx.c.get("/api/patterns/usage/p-inc/timeseries?bucket=day&from=9999-12-01"
                  "&to=9999-12-31T23%3A59%3A59Z")
    check_422("GET /p-inc/timeseries?to=9999-12-31T23:59:59Z&bucket=day (ends in 10000)", r, "to")


def phase_openapi(ctx):
    r = ctx.c.get("/openapi.json")
    if not R.check("GET /openapi.json: 200 JSON", r.status == 200 and r.is_json(), r):
        return
    d = r.json
    R.check("openapi: version 3.x", isinstance(d.get("openapi"), str)
            and d["openapi"].startswith("3."), d.get("openapi"))
    info = d.get("info") or {}
    R.check("openapi: info.title and info.version",
            isinstance(info.get("title"), str) and isinstance(info.get("version"), str), info)
    paths = d.get("paths")
    if not R.check("openapi: paths is a non-empty object", isinstance(paths, dict) and paths,
                   paths):
        return
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    doc_ops, problems, op_ids = set(), [], set()
    refs = []

    def collect_refs(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "$ref":
                    refs.append(v)
                else:
                    collect_refs(v)
        elif isinstance(x, list):
            for v in x:
                collect_refs(v)
    collect_refs(d)
    for ref in refs:
        node = d
        for part in ref.lstrip("#/").split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(ref, str) or not ref.startswith("#/") or node is None:
            problems.append("unresolved $ref " + str(ref))
    for path, item in paths.items():
        if not path.startswith("/"):
            problems.append("path %r does not start with /" % path)
        templ = set(re.findall(r"\{([^}]+)\}", path))
        for m, op in item.items():
            if m not in methods:
                problems.append("%s: unknown method key %r" % (path, m))
                continue
            doc_ops.add((m.upper(), path))
            oid = op.get("operationId")
            if oid in op_ids:
                problems.append("duplicate operationId %r" % oid)
            op_ids.add(oid)
            resp = op.get("responses")
            if not isinstance(resp, dict) or not resp:
                problems.append("%s %s: no responses" % (m, path))
            else:
                for code, rv in resp.items():
                    if not re.match(r"^[1-5]\d\d$", str(code)) or not isinstance(
                            rv, dict) or not isinstance(rv.get("description"), str):
                        problems.append("%s %s: bad response %r" % (m, path, code))
            params = op.get("parameters", [])
            pp = set()
            for p in params:
                if p.get("in") not in ("path", "query", "header", "cookie") or not p.get("name") \
                        or "schema" not in p:
                    problems.append("%s %s: bad parameter %r" % (m, path, p))
                if p.get("in") == "path":
                    pp.add(p.get("name"))
                    if p.get("required") is not True:
                        problems.append("%s %s: path parameter %s not required" % (m, path,
                                                                                    p["name"]))
            if pp != templ:
                problems.append("%s %s: path parameters %s, template has %s" % (m, path,
                                                                                sorted(pp),
                                                                                sorted(templ)))
            if "requestBody" in op and not isinstance(op["requestBody"].get("content"), dict):
                problems.append("%s %s: requestBody without content" % (m, path))
    R.check("openapi: well-formed operations, parameters, responses and $refs", not problems,
            "\n".join(problems[:15]))
    # Ranged parameters as the contract says.
    for tmpl, name, lo, hi, default in RANGED:
        op = paths.get(tmpl, {}).get("get", {})
        sch = next((p.get("schema", {}) for p in op.get("parameters", [])
                    if p.get("name") == name and p.get("in") == "query"), None)
        R.check("openapi: %s %s is integer %d..%d default %d" % (tmpl, name, lo, hi, default),
                sch is not None and sch.get("type") == "integer" and sch.get("minimum") == lo
                and sch.get("maximum") == hi and sch.get("default") == default, sch)
    # The document is true: every served route is in it, nothing else is.
    served = set()
    for fname in sorted(os.listdir(os.path.join(ROOT, "lua", "routes"))) + ["../pt/router.lua"]:
        if not fname.endswith(".lua"):
            continue
        with open(os.path.join(ROOT, "lua", "routes", fname), encoding="utf-8") as f:
            src = f.read()
        for m, p in re.findall(r'method\s*=\s*"([A-Z]+)",\s*path\s*=\s*"([^"]+)"', src):
            served.add((m, p))
    R.check("openapi: every route of the contract is documented", CONTRACT <= doc_ops,
            sorted(CONTRACT - doc_ops))
    R.eq("openapi: documented routes == routes declared in lua/routes and the router",
         sorted(doc_ops), sorted(served))
    # Every documented operation answers (not 404/405, no 5xx) with valid parameters; every
    # other method on a documented path is 405.
    for method, path in sorted(doc_ops):
        url = path.replace("{pattern_id}", "p-inc").replace("{agent_name}", "agent-alpha")
        body, ctype = None, None
        if method == "POST" and path.endswith("/events"):
            url += "?topic=agent-actions"
            body = []
        elif method in ("POST", "PUT"):
            body = [] if method == "POST" else {}
        r = ctx.c.call(method, url, body=body, ctype=ctype)
        R.check("openapi: %s %s answers (got %d)" % (method, path, r.status),
                r.status not in (404, 405) and r.status < 500, r)
    def served_by(method, url):
        segs = [x for x in url.split("/") if x]
        for m, tmpl in doc_ops:
            ts = [x for x in tmpl.split("/") if x]
            if m == method and len(ts) == len(segs) and all(
                    t == s or re.match(r"^\{[^}]+\}$", t) for t, s in zip(ts, segs)):
                return True
        return False
    for path in paths:
        url = path.replace("{pattern_id}", "p-inc").replace("{agent_name}", "agent-alpha")
        for m in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            if served_by(m, url):
                continue  # e.g. GET /api/patterns/usage/events is GET /{pattern_id}
            r = ctx.c.call(m, url)
            R.check("openapi: %s %s is not served (405)" % (m, path), r.status == 405, r)


def phase_metrics(ctx, label):
    r = ctx.c.get("/metrics")
    name = "GET /metrics" + label
    if not R.check(name + ": 200 text/plain", r.status == 200
                   and r.ctype.startswith("text/plain"), r):
        return
    samples, types, errors = parse_prometheus(r.body.decode("utf-8"))
    R.check(name + ": valid exposition format", not errors, "\n".join(errors[:10]))
    for fam, typ in (("pattern_usage_tracked_total", "counter"),
                     ("pattern_usage_errors_total", "counter"),
                     ("pattern_usage_update_duration_seconds", "histogram"),
                     ("usage_tracking_events_consumed_total", "counter"),
                     ("patterntrack_dead_letters_total", "counter")):
        R.eq("%s: # TYPE %s" % (name, fam), types.get(fam), typ)
    t = ctx.t
    for topic, st in sorted(t.topics.items()):
        R.eq("%s: events consumed ok, %s" % (name, topic),
             metric(samples, "usage_tracking_events_consumed_total", topic=topic, status="ok"),
             float(st["events"] - st["dead"]))
        R.eq("%s: events consumed dead_letter, %s" % (name, topic),
             metric(samples, "usage_tracking_events_consumed_total", topic=topic,
                    status="dead_letter"), float(st["dead"]))
        R.eq("%s: events without patterns, %s" % (name, topic),
             metric(samples, "patterntrack_events_without_patterns_total", topic=topic),
             float(st["without"]))
        for reason, n in sorted(st["reasons"].items()):
            R.eq("%s: dead letters %s / %s" % (name, topic, reason),
                 metric(samples, "patterntrack_dead_letters_total", topic=topic, reason=reason),
                 float(n))
    source = {"agent-actions": "action", "agent-manifest-injections": "manifest",
              "agent-routing-decisions": "routing"}
    for topic, st_name in source.items():
        R.eq("%s: pattern_usage_tracked_total{source_type=%s}" % (name, st_name),
             metric(samples, "pattern_usage_tracked_total", source_type=st_name),
             float(t.topics.get(topic, {}).get("uses", 0)))
    dead = sum(st["dead"] for st in t.topics.values())
    R.eq(name + ": pattern_usage_errors_total{error_type=dead_letter}",
         metric(samples, "pattern_usage_errors_total", error_type="dead_letter"), float(dead))
    R.eq(name + ": patterntrack_dead_letters_total (sum)",
         metric(samples, "patterntrack_dead_letters_total"), float(dead))
    R.eq(name + ": no flush failed",
         metric(samples, "pattern_usage_errors_total", error_type="flush_failed"), 0.0)
    n = metric(samples, "pattern_usage_update_duration_seconds_count")
    R.check(name + ": flushes were timed", n >= 1, n)
    # Histograms: cumulative buckets, +Inf = _count.
    bad = []
    series = {}
    for s_name, labels, v in samples:
        if s_name.endswith("_bucket"):
            key = (s_name[:-7], tuple(sorted((k, x) for k, x in labels.items() if k != "le")))
            series.setdefault(key, []).append((float(labels.get("le", "nan")), v))
    for (fam, key), buckets in series.items():
        vals = [v for _, v in sorted(buckets)]
        cnt = metric(samples, fam + "_count", **dict(key))
        if vals != sorted(vals) or sorted(buckets)[-1][0] != float("inf") or vals[-1] != cnt:
            bad.append("%s %s" % (fam, key))
    R.check(name + ": histograms are cumulative and end at +Inf = _count", not bad, bad[:5])
    # the loop lag probe fires every 100 ms: at least once in the engine's life so far, and its
    # lags are non-negative
    R.check(name + ": event loop lag observed",
            metric(samples, "patterntrack_event_loop_lag_seconds_count") >= 1
            and metric(samples, "patterntrack_event_loop_lag_seconds_sum") >= 0,
            metric(samples, "patterntrack_event_loop_lag_seconds_count"))
    want = ctx.c.counts.get(("GET", "/api/patterns/usage/summary", 200), 0)
    R.eq(name + ": HTTP requests of GET /summary 200 = the ones this test made",
         metric(samples, "patterntrack_http_requests_total", method="GET",
                route="/api/patterns/usage/summary", status="200"), float(want))
    h = ctx.c.get("/health").json or {}
    R.eq(name + ": /health flushes_ok = patterntrack_flushes_total{result=ok}",
         float((h.get("ingest") or {}).get("flushes_ok", -1)),
         metric(samples, "patterntrack_flushes_total", result="ok"))


def phase_concurrency(ctx):
    rng = random.Random(20251028)
    ids = ["c-%02d" % i for i in range(12)] + ["p-stable", "ghost-a", UNI, SP]
    agents = ["agent-alpha", "agent-beta", "conc-1", "conc-2", "agent with space", None]
    batches = []
    for i in range(40):
        b = Batch("agent-actions", "array" if i % 2 else "ndjson")
        for _ in range(25):
            v = ctx.next_variant()
            refs = rng.sample(ids, rng.randint(1, 4))
            agent = rng.choice(agents)
            t = ago(rng.randint(0, 19), rng.randint(0, 49), rng.randint(0, 59))
            b.event(action_event(refs, agent, t, v), refs, agent, t)
        if i % 5 == 0:
            b.dead("not-json" if b.fmt == "ndjson" else "7",
                   "not json" if b.fmt == "ndjson" else "not an object")
        batches.append(b)
    paths = ["/api/patterns/usage/summary", "/api/patterns/usage/top",
             "/api/patterns/usage/top?limit=100&pattern_type=code",
             "/api/patterns/usage/unused?min_age_days=5",
             "/api/patterns/usage/stale?days_inactive=3",
             "/api/patterns/usage/unknown", "/api/patterns/usage/by-agent/agent-alpha",
             "/api/patterns/usage/p-stable", "/api/patterns/usage/p-inc?include_trend=false",
             "/api/patterns/usage/" + q(UNI), "/health", "/metrics", "/openapi.json",
             "/api/patterns/usage/no-such-pattern"]
    errors, lock = [], threading.Lock()

    def note(msg):
        with lock:
            errors.append(msg)

    def post(b, lo):
        body, ctype = b.body()
        if b.fmt == "ndjson":
            ctype = "application/x-ndjson"
        try:
            r = ctx.c.call("POST", "/api/patterns/usage/events?topic=agent-actions",
                           body=body, ctype=ctype, timeout=10)
        except OSError as e:
            # No answer: the engine holds the events all the same (they were accepted into
            # its batch); the next POST gets them flushed. Counted, and a failure.
            note("POST events batch %d: no answer within 10 s (%r)" % (batches.index(b)
                                                                          if b in batches
                                                                          else -1, e))
            with lock:
                ctx.t.ingested(b, lo, now())
            return False
        if r.status == 200 and r.json == b.expected_answer():
            with lock:
                ctx.t.ingested(b, lo, now())
        else:
            note("POST events: %r (want %r)" % (r, b.expected_answer()))
        return True

    def poster():
        answered = True
        for b in batches:
            answered = post(b, now())
        if not answered:
            # The last batch got no answer: one more event gets it flushed.
            nudge = Batch("agent-actions", "array")
            t = ago(0, 40)
            nudge.event({"agent_name": "nudge", "patterns": ["c-00"], "timestamp": iso(t)},
                        ["c-00"], "nudge", t)
            post(nudge, now())

    def getter(seed):
        g = random.Random(seed)
        last_total = -1
        n = 0
        for _ in range(200):
            path = g.choice(paths)
            try:
                r = ctx.c.get(path, timeout=30)
            except Exception as e:  # noqa: BLE001
                note("GET %s: %r" % (path, e))
                continue
            n += 1
            if r.status >= 500 or (r.status != 200 and "no-such" not in path):
                note("GET %s: %r" % (path, r))
            elif path.endswith("/summary"):
                tot = (r.json or {}).get("total_usage", -1)
                if tot < last_total:
                    note("GET /summary: total_usage went back from %d to %d" % (last_total, tot))
                last_total = tot
        return n

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=17) as ex:
        post_f = ex.submit(poster)
        gets = [ex.submit(getter, i) for i in range(16)]
        answered = sum(f.result() for f in gets)
        post_f.result()
    R.check("concurrency: 16 x 200 GETs during 40 POSTs, no 5xx, no connection error",
            not errors and answered == 3200, "%d answered; %d errors:\n%s" % (
                answered, len(errors), "\n".join(errors[:10])))
    print("concurrency phase: %.1f s" % (time.monotonic() - start), flush=True)


def phase_dead_letters(ctx):
    """GET /api/dead-letters and /summary against what the test sent: per topic and reason the
    counts, pages that add up to the whole list newest first, filters, and the payloads of the
    items sent as dead letters, shown whole or cut on a character boundary."""
    t, c = ctx.t, ctx.c
    want = {}
    for topic, st in t.topics.items():
        for reason, n in st["reasons"].items():
            want[(topic, reason)] = n
    r = c.get("/api/dead-letters/summary")
    if R.check("GET /api/dead-letters/summary: 200 JSON", r.status == 200 and r.is_json(), r):
        got = {(x["topic"], x["reason"]): x["count"] for x in r.json["by_topic_reason"]}
        R.eq("dead letters per topic and reason", got, want)
        R.eq("dead letters in all", r.json["total"], sum(want.values()))
        R.check("first_at <= last_at in every group", all(
            parse_iso(x["first_at"]) <= parse_iso(x["last_at"])
            for x in r.json["by_topic_reason"]), r.json)
    total = sum(want.values())
    rows = []
    offset = 0
    while True:
        r = c.get("/api/dead-letters" + qs(limit=7, offset=offset))
        if not R.check("GET /api/dead-letters offset=%d: 200" % offset, r.status == 200, r):
            return
        R.eq("total at offset %d" % offset, r.json["total"], total)
        rows += r.json["dead_letters"]
        if len(r.json["dead_letters"]) < 7:
            break
        offset += 7
    R.eq("pages of 7 add up to every dead letter", len(rows), total)
    ids = [x["id"] for x in rows]
    R.check("newest first: ids descending, none twice", ids == sorted(set(ids), reverse=True),
            ids)
    got = sorted((x["topic"], x["reason"]) for x in rows)
    R.eq("every row's topic and reason", got, sorted(
        k for k, n in want.items() for _ in range(n)))
    # the items sent as dead letters, with their payloads (shown whole: all are short)
    sent = sorted((tp, rs, tx) for tp, rs, tx in t.dead_payloads)
    shown = sorted((x["topic"], x["reason"], x["payload"]) for x in rows
                   if x["reason"] != "invalid pattern id")
    R.eq("payloads of the items sent as dead letters", shown, sent)
    R.check("payloads shown as UTF-8, whole", all(
        x["payload_encoding"] == "utf-8" and x["payload_shown_bytes"] == x["payload_size"]
        for x in rows), rows[:3])
    # filters
    for (topic, reason), n in sorted(want.items()):
        r = c.get("/api/dead-letters" + qs(topic=topic, reason=reason, limit=1000))
        R.check("topic=%s reason=%s: %d rows, total %d" % (topic, reason, n, n),
                r.status == 200 and r.json["total"] == n and len(r.json["dead_letters"]) == n
                and all(x["topic"] == topic and x["reason"] == reason
                        for x in r.json["dead_letters"]), r)
    r = c.get("/api/dead-letters" + qs(topic="no-such-topic"))
    R.check("an unknown topic: none, total 0",
            r.status == 200 and r.json["total"] == 0 and r.json["dead_letters"] == [], r)
    r = c.get("/api/dead-letters" + qs(offset=total + 5))
    R.check("past the end: none, total still %d" % total,
            r.status == 200 and r.json["total"] == total and r.json["dead_letters"] == [], r)
    # payload_max cuts; a multi-byte character is not split
    long_ = max(rows, key=lambda x: x["payload_size"])
    for m in (0, 1, 2, 3):
        r = c.get("/api/dead-letters" + qs(limit=1000, payload_max=m))
        x = next(y for y in r.json["dead_letters"] if y["id"] == long_["id"])
        R.check("payload_max=%d shows at most %d bytes, a prefix of the payload" % (m, m),
                x["payload_shown_bytes"] <= m and x["payload_encoding"] == "utf-8"
                and long_["payload"].encode().startswith(x["payload"].encode())
                and len(x["payload"].encode()) == x["payload_shown_bytes"], (x, long_))
    for name, kw in (("limit=0", {"limit": 0}), ("limit=1001", {"limit": 1001}),
                     ("payload_max=-1", {"payload_max": -1}), ("offset=x", {"offset": "x"})):
        r = c.get("/api/dead-letters" + qs(**kw))
        R.eq("GET /api/dead-letters %s: 422" % name, r.status, 422)


def csv_expected(value):
    """A JSON value as lua/lib/pt/csv.lua writes it in a field (before RFC 4180 quoting): null
    empty, booleans as words, an array of plain values joined by ';' (';' and '\\' escaped
    with '\\'), an object as JSON. Numbers are compared apart (csv_same)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(not isinstance(x, (list, dict)) for x in value):
        return ";".join(re.sub(r"([\\;])", r"\\\1", csv_expected(x)) for x in value)
    if isinstance(value, (list, dict)):
        return value  # compared as JSON
    return str(value)


def csv_same(field, value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return field == csv_expected(value)
    if isinstance(value, (int, float)):
        try:
            return float(field) == float(value) and (isinstance(value, float) or
                                                     field == str(value))
        except ValueError:
            return False
    if isinstance(value, list) and all(not isinstance(x, (list, dict)) for x in value):
        return field == csv_expected(value)
    try:
        return json.loads(field) == value
    except ValueError:
        return False


def phase_csv(ctx):
    """Every route whose /openapi.json 200 offers text/csv: the CSV (?format=csv, and Accept:
    text/csv) parsed back (Python's csv module, RFC 4180) has the rows of the JSON answer, in
    order, with the columns the schema's item properties give in alphabetical order (a first
    column `list` when the answer has several arrays); quoting survives a name holding a comma,
    a double quote and a line break."""
    import csv as pycsv
    import io
    c = ctx.c
    # a name that needs quoting, in /unused (registered 40 days ago, never used)
    body = {"pattern_name": 'Comma, "quoted"\nand a second line; semi', "pattern_type": "code",
            "created_at": iso(ago(40))}
    register(ctx, "PUT /api/patterns/csv-quoting", "PUT", "/api/patterns/csv-quoting", body,
             [dict(body, pattern_id="csv-quoting")])
    time.sleep(1.1)  # the catalog write is this engine's: cached answers are stale already
    spec = c.get("/openapi.json").json
    routes = []
    for path, item in sorted(spec["paths"].items()):
        op = item.get("get")
        content = op and op["responses"].get("200", {}).get("content", {})
        if content and "text/csv" in content:
            routes.append((path, op, content["application/json"]["schema"]))
    R.check("routes offering CSV: at least the 14 list routes", len(routes) >= 14,
            [r[0] for r in routes])
    quoted = False
    for path, op, schema in routes:
        url = path.replace("{pattern_id}", "p-inc").replace("{agent_name}", "agent-alpha")
        fmt = [p for p in op["parameters"] if p["name"] == "format"]
        R.check("%s: a format parameter json|csv" % path,
                fmt and fmt[0]["schema"].get("enum") == ["json", "csv"], fmt)
        if schema.get("type") == "array":
            lists = [("", schema)]
        else:
            lists = [(k, v) for k, v in sorted(schema["properties"].items())
                     if v.get("type") == "array" and v.get("items", {}).get("properties")]
        cols = sorted({k for _, s in lists for k in s["items"]["properties"]})
        j = c.get(url)
        r1 = c.get(url + ("&" if "?" in url else "?") + "format=csv")
        r2 = c.get(url, headers={"Accept": "text/csv, application/json;q=0.5"})
        if not (R.check("%s: JSON 200" % path, j.status == 200 and j.is_json(), j) and
                R.check("%s?format=csv: 200 text/csv" % path, r1.status == 200 and
                        r1.ctype.startswith("text/csv"), r1)):
            continue
        R.check("%s with Accept: text/csv: the same CSV" % path,
                r2.status == 200 and r2.ctype.startswith("text/csv") and r2.body == r1.body, r2)
        text = r1.body.decode("utf-8")
        R.check("%s: CRLF line ends" % path, text.endswith("\r\n"), text[-20:])
        rows = list(pycsv.reader(io.StringIO(text, newline="")))
        if len(lists) == 1 and lists[0][0] == "":
            want_rows = [("", x) for x in j.json]
        else:
            names = [n for n, _ in lists]
            # the route's own order of its arrays is the order of `csv`: take it from the CSV
            order = []
            for row in rows[1:]:
                if row and row[0] not in order:
                    order.append(row[0])
            named = [n for n in order if n in names] + [n for n in names if n not in order]
            want_rows = [(n, x) for n in named for x in (j.json.get(n) or [])]
        multi = len(lists) > 1
        R.eq("%s: header" % path, rows[0] if rows else None, (["list"] if multi else []) + cols)
        R.eq("%s: as many rows as the JSON" % path, len(rows) - 1, len(want_rows))
        bad = []
        for row, (n, x) in zip(rows[1:], want_rows):
            vals = row[1:] if multi else row
            if multi and row[0] != n:
                bad.append(("list", row[0], n))
            for col, field in zip(cols, vals):
                if not csv_same(field, x.get(col)):
                    bad.append((col, field, x.get(col)))
            quoted = quoted or any("\n" in f and '"' in f and "," in f for f in vals)
        R.check("%s: every field as the JSON has it" % path, not bad, bad[:5])
    R.check("a field with a comma, a quote and a line break came back whole", quoted)
    for name, fmt in (("format=xml", "xml"), ("format=CSV", "CSV")):
        r = c.get("/api/patterns/usage/top?format=" + fmt)
        R.eq("GET /top?%s: 422" % name, r.status, 422)
    r = c.get("/api/patterns/usage/top", headers={"Accept": "text/csv;q=0.1, application/json"})
    R.check("Accept preferring JSON: JSON", r.status == 200 and r.is_json(), r)
    r = c.get("/api/patterns/usage/summary?format=csv")
    R.check("a route without rows ignores format=csv: JSON", r.status == 200 and r.is_json(), r)


def phase_db_down(ctx, state):
    rc, err = services("stop", "pg")
    state["pg_stopped"] = True
    if not R.check("scripts/services stop pg", rc == 0, err):
        return

    def status_of(path, want):
        r = ctx.c.get(path, timeout=20)
        return r if r.status == want else None
    r = poll(lambda: status_of("/health", 503), 30, 0.2)
    if R.check("PostgreSQL down: /health is 503", r is not None, "never 503 within 30 s"):
        R.check("PostgreSQL down: /health JSON says so", r.is_json()
                and r.json.get("status") == "degraded"
                and (r.json.get("postgresql") or {}).get("reachable") is False, r)
    for path in ("/api/patterns/usage/summary", "/api/patterns/usage/p-inc",
                 "/api/patterns/usage/top"):
        # /summary may answer from its cache for up to 1 s (README): then it must say 503.
        r = poll(lambda: status_of(path, 503), 5, 0.2) or ctx.c.get(path, timeout=30)
        R.check("PostgreSQL down: GET %s is 503 JSON with detail" % path,
                r.status == 503 and r.is_json() and isinstance(r.json.get("detail"), str), r)
    for path in ("/metrics", "/openapi.json"):
        r = ctx.c.get(path)
        R.check("PostgreSQL down: GET %s still 200" % path, r.status == 200, r)
    rc, err = services("start", "pg")
    if R.check("scripts/services start pg", rc == 0, err):
        state["pg_stopped"] = False
    r = poll(lambda: status_of("/health", 200), 60, 0.2)
    R.check("PostgreSQL back: /health is 200 again", r is not None, "not 200 within 60 s")
    # Every pooled connection died with the server; none of them may cost a client a 503.
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda _: ctx.c.get("/api/patterns/usage/p-inc").status, range(8)))
    R.eq("PostgreSQL back: 8 parallel requests on the old pool all 200", codes, [200] * 8)
    r = poll(lambda: status_of("/api/patterns/usage/summary", 200), 30, 0.2)
    if R.check("PostgreSQL back: /summary is 200 again", r is not None, "not 200 within 30 s"):
        R.eq("PostgreSQL back: /summary unchanged", r.json, ctx.t.summary())
    # Ingest recovers too (the flush connection died with the server).
    b = Batch("agent-actions", "array")
    t = ago(0, 41)
    b.event({"agent_name": "after-restart", "patterns": ["p-after"], "timestamp": iso(t)},
            ["p-after"], "after-restart", t)
    send(ctx, "PostgreSQL back: POST events", b)
    check_pattern(ctx, "p-after", label=" (after the restart)")
    check_summary(ctx, " (after the restart)")


def main():
    state = {"pg_stopped": False}

    def phases(ctx):
        R.phase("health", phase_health_start, ctx)
        R.phase("catalog", phase_catalog, ctx)
        R.phase("events", phase_events, ctx)
        R.phase("catalog after events", phase_catalog_after_events, ctx)
        R.phase("verify", verify_all, ctx, "")
        R.phase("parameter edges", phase_edges, ctx)
        R.phase("errors and encodings", phase_errors, ctx)
        R.phase("openapi", phase_openapi, ctx)
        R.phase("metrics", phase_metrics, ctx, "")
        R.phase("concurrency", phase_concurrency, ctx)
        R.phase("verify after load", verify_all, ctx, " (after load)")
        R.phase("metrics after load", phase_metrics, ctx, " (after load)")
        R.phase("dead letters", phase_dead_letters, ctx)
        R.phase("csv", phase_csv, ctx)
        R.phase("database down", phase_db_down, ctx, state)

    def after(ctx):
        if state["pg_stopped"]:
            rc, err = services("start", "pg")
            R.check("scripts/services start pg (cleanup)", rc == 0, err)

    return run_suite(R, "pt_it_api", CONFIG, lambda c, server, db, binary: Ctx(c, Truth()),
                     phases, after=after)


if __name__ == "__main__":
    sys.exit(main())
