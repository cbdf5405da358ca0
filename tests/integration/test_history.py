#!/usr/bin/env python3
"""Integration test of the history analytics (issue 4): trends, time series, heatmaps,
co-occurrence, agents, lifecycle, and the catalog's status.

    python3 tests/integration/test_history.py [PATH/TO/patterntrack]

Needs DATABASE_URL (PostgreSQL from `eval "$(scripts/services up)"`); Kafka is not used. The
binary is argv[1], else $PT_BIN, else build/patterntrack. The test creates its own database
pt_it_history (C collation), starts the engine with KAFKA_ENABLE_CONSUMER=false and a temporary
config (batch_timeout_ms = 100, cooccurrence_max_patterns = 4, retention_hourly_days = 36500 so
that only the test rolls buckets up), registers a catalog, POSTs about 550 events spread over
45 days in shuffled batches (plus late ones), and compares every answer with a model computed
here from what it sent. Then it rolls up every hour older than 30 days (pt_rollup through psql)
and checks that:
  - unchanged: usage totals, daily time series, agents and profiles, co-occurrence, lifecycle,
    trends whose windows lie in the hourly range (window_days 1, 7, 14), heatmaps of 30 days;
  - as documented for the coarser resolution: hourly series over rolled-up days (null hours and
    the day in rolled_up), heatmaps reaching rolled-up days (daily_usage_not_shown), trends whose
    earlier window reaches rolled-up days (each day counted at its 00:00 UTC start).
Prints `N passed, M failed` last and exits 1 on any failure.

Event times are T0 - d days - 12 h + delta with delta in [-10 h, +9 h 50 min] (T0 = the next
whole UTC hour at the start), so every event is at least 2 h away from any window edge that is
a whole number of days before the end of the current hour (1 h if the hour turns during the
run; answers that depend on the request time are checked against both hours).
"""

import datetime as dt
import json
import math
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from fractions import Fraction

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_harness import (ROOT, Client, Results, Server, engine_binary, free_port,  # noqa: E402
                         fresh_db, psql, q, run_suite)

R = Results()
UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
DBNAME = "pt_it_history"
MAX_PAIR_PATTERNS = 4
CONFIG = """-- written by tests/integration/test_history.py
return {
    topics = { ["agent-actions"] = "rules/agent-actions.lua" },
    batch_timeout_ms = 100,
    cooccurrence_max_patterns = %d,
    fold_interval_ms = 0, -- the folds are run by the test (phase_merges)
    retention_hourly_days = 36500,
    pattern_lifetime_days = { default = 90, ops = 30, design = 180 },
    log_level = "warn",
}
""" % MAX_PAIR_PATTERNS
# The config's pattern_lifetime_days above.
LIFETIME = {"default": 90, "by_type": {"ops": 30, "design": 180}}
DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
ANY_STR = object()  # a non-empty string, whatever it says


def now():
    return dt.datetime.now(UTC)


def floor_hour(t):
    return t.replace(minute=0, second=0, microsecond=0)


def floor_day(t):
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def t0_of(t):
    return floor_hour(t) + HOUR


def iso(t):
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += ".%06d" % t.microsecond
    return s + "Z"


def parse_iso(s):
    if not isinstance(s, str) or not s.endswith("Z"):
        return None
    try:
        return dt.datetime.fromisoformat(s[:-1] + "+00:00")
    except ValueError:
        return None


def bkey(s):
    """Byte order, as COLLATE "C" and the engine's Lua sort compare."""
    return s.encode("utf-8")


def round_half_up(x, digits):
    return math.floor(x * 10 ** digits + 0.5) / 10 ** digits


def trend(recent, previous):
    """stats.trend of lua/lib/pt/stats.lua, with the same float operations."""
    if not previous:
        return "insufficient_data", 0.0
    pct = (recent - previous) / previous * 100.0
    pct = math.floor(pct * 100 + 0.5) / 100
    if pct > 10:
        return "increasing", pct + 0.0
    if pct < -10:
        return "decreasing", abs(pct) + 0.0
    return "stable", abs(pct) + 0.0


def days_floor(later, earlier):
    return math.floor((later - earlier).total_seconds() / 86400)


def diff(got, want, path="$"):
    """Differences between an answer and the expectation. want may hold datetimes (got must
    be the same instant as an ISO string ending in Z), floats (within 1e-6; got must be a JSON
    float) and ANY_STR. Objects must have exactly the expected keys."""
    if want is ANY_STR:
        return [] if isinstance(got, str) and got else ["%s: got %r, want a string" % (path, got)]
    if isinstance(want, dt.datetime):
        return [] if parse_iso(got) == want else ["%s: got %r want %s" % (path, got, iso(want))]
    if isinstance(want, float):
        if isinstance(got, float) and abs(got - want) <= 1e-6:
            return []
        return ["%s: got %r want %r" % (path, got, want)]
    if isinstance(want, bool) or want is None or isinstance(want, (int, str)):
        if type(got) is type(want) and got == want:
            return []
        return ["%s: got %r want %r" % (path, got, want)]
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return ["%s: got %r, want an object" % (path, str(got)[:200])]
        out = []
        for k in sorted(set(got) | set(want)):
            if k not in want:
                out.append("%s: unexpected key %s" % (path, k))
            elif k not in got:
                out.append("%s: missing key %s" % (path, k))
            else:
                out += diff(got[k], want[k], path + "." + k)
        return out
    if isinstance(want, list):
        if not isinstance(got, list):
            return ["%s: got %r, want a list" % (path, str(got)[:200])]
        out = []
        if len(got) != len(want):
            out.append("%s: %d items, want %d (got %s)" % (
                path, len(got), len(want), json.dumps(got)[:300]))
        for i, (g, w) in enumerate(zip(got, want)):
            out += diff(g, w, "%s[%d]" % (path, i))
        return out
    raise TypeError("cannot compare with %r" % (want,))


# ---------------------------------------------------------------- the model


class Event:
    __slots__ = ("t", "agent", "distinct", "rolled")

    def __init__(self, t, agent, ids):
        self.t = t
        self.agent = agent or "unknown"
        self.distinct = sorted(set(ids), key=bkey)
        self.rolled = False  # its hour was rolled up into a daily bucket

    def placed(self):
        """Where the engine's buckets hold it: its hour, or the start of its rolled-up day."""
        return floor_day(self.t) if self.rolled else floor_hour(self.t)


class Model:
    def __init__(self):
        self.catalog = {}  # id -> {name, type, status, created, registered}
        self.events = []

    # ---- what the test sent ----

    def register(self, p, at):
        row = self.catalog.get(p["pattern_id"])
        if row is None:
            row = self.catalog[p["pattern_id"]] = {"name": None, "type": None,
                                                   "status": "active", "created": at,
                                                   "registered": True}
        for k, f in (("pattern_name", "name"), ("pattern_type", "type"), ("status", "status")):
            if p.get(k) is not None:
                row[f] = p[k]
        if p.get("created_at"):
            row["created"] = parse_iso(p["created_at"])
        row["registered"] = True

    def ingested(self, events, at):
        for e in events:
            self.events.append(e)
            for pid in e.distinct:
                if pid not in self.catalog:
                    self.catalog[pid] = {"name": None, "type": None, "status": "active",
                                         "created": at, "registered": False}

    def rollup(self, day_cut):
        for e in self.events:
            if floor_hour(e.t) < day_cut:
                e.rolled = True

    # ---- derived ----

    def used(self):
        return [e for e in self.events if e.distinct]

    def usage(self, pid=None):
        c = Counter()
        for e in self.used():
            for p in e.distinct:
                c[p] += 1
        return c if pid is None else c[pid]

    def ptype(self, pid):
        return self.catalog[pid]["type"] or "unknown"

    def pname(self, pid):
        return self.catalog[pid]["name"] or pid

    def last_used(self, pid, agent=None):
        ts = [e.t for e in self.used() if pid in e.distinct and (agent is None or e.agent == agent)]
        return max(ts) if ts else None

    def hourly(self):
        c = Counter()
        for e in self.used():
            if not e.rolled:
                for p in e.distinct:
                    c[(p, floor_hour(e.t))] += 1
        return c

    def daily(self):
        c = Counter()
        for e in self.used():
            if e.rolled:
                for p in e.distinct:
                    c[(p, floor_day(e.t))] += 1
        return c

    def trends(self, window_days, direction, limit, t0):
        w = window_days * DAY
        t1, t2 = t0 - w, t0 - 2 * w
        rec, prev = Counter(), Counter()
        daily_used = False
        for e in self.used():
            p = e.placed()
            if t1 <= p < t0:
                side = rec
            elif t2 <= p < t1:
                side = prev
            else:
                continue
            daily_used = daily_used or e.rolled
            for pid in e.distinct:
                side[pid] += 1
        items = []
        for pid in prev:
            tr, pct = trend(rec[pid], prev[pid])
            if tr == direction:
                items.append({"pattern_id": pid, "pattern_name": self.pname(pid),
                              "pattern_type": self.ptype(pid), "recent_usage": rec[pid],
                              "previous_usage": prev[pid], "trend": tr, "trend_percentage": pct})
        sign = 1 if direction == "increasing" else -1
        items.sort(key=lambda i: (-i["trend_percentage"],
                                  -sign * (i["recent_usage"] - i["previous_usage"]),
                                  bkey(i["pattern_id"])))
        r, p = sum(rec.values()), sum(prev.values())
        tr, pct = trend(r, p)
        out = {"window_days": window_days, "direction": direction, "window_end": t0,
               "recent_window_start": t1, "previous_window_start": t2,
               "overall": {"recent_usage": r, "previous_usage": p, "trend": tr,
                           "trend_percentage": pct},
               "patterns": items[:limit]}
        if daily_used:
            out["resolution_note"] = ANY_STR
        return out

    def pattern_trend(self, pid, window_days, t0):
        w = window_days * DAY
        r = p = 0
        for e in self.used():
            if pid in e.distinct:
                x = e.placed()
                if t0 - w <= x < t0:
                    r += 1
                elif t0 - 2 * w <= x < t0 - w:
                    p += 1
        return trend(r, p)

    def timeseries(self, pid, bucket, frm, to):
        size = HOUR if bucket == "hour" else DAY
        lo = floor_hour(frm) if bucket == "hour" else floor_day(frm)
        hi = floor_hour(to) if bucket == "hour" else floor_day(to)
        if hi < to:
            hi += size
        hourly = {h: c for (p, h), c in self.hourly().items() if p == pid}
        daily = {d: c for (p, d), c in self.daily().items() if p == pid}
        out = {"pattern_id": pid, "bucket": bucket, "from": lo, "to": hi, "points": []}
        total = 0
        t = lo
        if bucket == "day":
            while t < hi:
                c = daily.get(t, 0) + sum(c for h, c in hourly.items() if floor_day(h) == t)
                out["points"].append({"start": t, "usage_count": c})
                total += c
                t += size
        else:
            day_lo = floor_day(lo)
            day_hi = floor_day(hi) + (DAY if floor_day(hi) < hi else dt.timedelta(0))
            rolled = sorted(d for d in daily if day_lo <= d < day_hi)
            out["rolled_up"] = [{"day": d.strftime("%Y-%m-%d"), "usage_count": daily[d] + sum(
                c for h, c in hourly.items() if floor_day(h) == d)} for d in rolled]
            while t < hi:
                if floor_day(t) in rolled:
                    c = None
                else:
                    c = hourly.get(t, 0)
                    total += c
                out["points"].append({"start": t, "usage_count": c})
                t += size
            if rolled:
                out["resolution_note"] = ANY_STR
        out["total"] = total
        return out

    def heatmap(self, pid, days, tz_minutes, t0):
        t1 = t0 - days * DAY
        off = dt.timedelta(minutes=tz_minutes)
        m = [[0] * 24 for _ in range(7)]
        for (p, h), c in self.hourly().items():
            if (pid is None or p == pid) and t1 <= h < t0:
                local = h + off
                m[(local.weekday() + 1) % 7][local.hour] += c  # Sunday first
        not_shown = sum(c for (p, d), c in self.daily().items()
                        if (pid is None or p == pid) and floor_day(t1) <= d <= floor_day(t0))
        sign = "-" if tz_minutes < 0 else "+"
        out = {"tz": "%s%02d:%02d" % (sign, abs(tz_minutes) // 60, abs(tz_minutes) % 60),
               "days": days, "day_names": DAY_NAMES, "matrix": m, "from": t1, "to": t0,
               "total": sum(map(sum, m)), "max": max(map(max, m)),
               "daily_usage_not_shown": not_shown}
        if pid is not None:
            out["pattern_id"] = pid
        if not_shown:
            out["resolution_note"] = ANY_STR
        return out

    def pairs(self):
        """(p1, p2) -> [count, last], and the events over the pair limit."""
        out, over = {}, 0
        for e in self.used():
            n = len(e.distinct)
            if n > MAX_PAIR_PATTERNS:
                over += 1
                continue
            for i in range(n):
                for j in range(i + 1, n):
                    k = (e.distinct[i], e.distinct[j])
                    cur = out.setdefault(k, [0, e.t])
                    cur[0] += 1
                    cur[1] = max(cur[1], e.t)
        return out, over

    def measures(self, both, a, b):
        n = len(self.used())
        return (round_half_up(both * n / (a * b), 6), round_half_up(both / (a + b - both), 6))

    def cooccurring(self, pid, limit, sort):
        pairs, over = self.pairs()
        use = self.usage()
        ua = use[pid]
        rows = []
        for (a, b), (cnt, last) in pairs.items():
            if pid in (a, b):
                other = b if a == pid else a
                lift, jac = self.measures(cnt, ua, use[other])
                rows.append({"pattern_id": other, "pattern_name": self.pname(other),
                             "pattern_type": self.ptype(other), "usage_count": use[other],
                             "count": cnt, "lift": lift, "jaccard": jac,
                             "last_seen_together": last})
        if sort == "count":
            key = lambda r: (-r["count"], bkey(r["pattern_id"]))  # noqa: E731
        elif sort == "lift":
            key = lambda r: (-Fraction(r["count"], r["usage_count"]), -r["count"],  # noqa: E731
                             bkey(r["pattern_id"]))
        else:
            key = lambda r: (-Fraction(r["count"], ua + r["usage_count"] - r["count"]),  # noqa
                             -r["count"], bkey(r["pattern_id"]))
        rows.sort(key=key)
        return {"pattern_id": pid, "usage_count": ua, "events_with_patterns": len(self.used()),
                "events_over_cooccurrence_limit": over, "cooccurring": rows[:limit]}

    def top_pairs(self, limit):
        pairs, over = self.pairs()
        use = self.usage()
        keys = sorted(pairs, key=lambda k: (-pairs[k][0], bkey(k[0]), bkey(k[1])))[:limit]
        out = []
        for a, b in keys:
            cnt, last = pairs[(a, b)]
            lift, jac = self.measures(cnt, use[a], use[b])
            out.append({"pattern_id_1": a, "pattern_name_1": self.pname(a),
                        "usage_count_1": use[a], "pattern_id_2": b,
                        "pattern_name_2": self.pname(b), "usage_count_2": use[b], "count": cnt,
                        "lift": lift, "jaccard": jac, "last_seen_together": last})
        return {"events_with_patterns": len(self.used()),
                "events_over_cooccurrence_limit": over, "pairs": out}

    def agent_rows(self):
        """agent -> pattern -> [count, first, last]"""
        out = defaultdict(dict)
        for e in self.used():
            for p in e.distinct:
                cur = out[e.agent].setdefault(p, [0, e.t, e.t])
                cur[0] += 1
                cur[1] = min(cur[1], e.t)
                cur[2] = max(cur[2], e.t)
        return out

    def agents(self, limit, offset):
        rows = []
        for a, ps in self.agent_rows().items():
            rows.append({"agent_name": a, "usage_count": sum(v[0] for v in ps.values()),
                         "distinct_patterns": len(ps),
                         "first_used_at": min(v[1] for v in ps.values()),
                         "last_used_at": max(v[2] for v in ps.values())})
        rows.sort(key=lambda r: (-r["usage_count"], bkey(r["agent_name"])))
        return {"total": len(rows), "limit": limit, "offset": offset,
                "agents": rows[offset:offset + limit]}

    def profile(self, agent, limit):
        ps = self.agent_rows()[agent]
        total = sum(v[0] for v in ps.values())
        types = {}
        for p, (c, f, l) in ps.items():
            t = types.setdefault(self.ptype(p), [0, 0, f, l])
            t[0] += c
            t[1] += 1
            t[2] = min(t[2], f)
            t[3] = max(t[3], l)
        by_type = [{"pattern_type": t, "usage_count": v[0], "patterns": v[1],
                    "percentage": round_half_up(v[0] / total * 100, 2),
                    "first_used_at": v[2], "last_used_at": v[3]} for t, v in types.items()]
        by_type.sort(key=lambda r: (-r["usage_count"], bkey(r["pattern_type"])))
        top = sorted(ps, key=lambda p: (-ps[p][0], bkey(p)))[:limit]
        return {"agent_name": agent, "usage_count": total, "distinct_patterns": len(ps),
                "first_used_at": min(v[1] for v in ps.values()),
                "last_used_at": max(v[2] for v in ps.values()), "by_pattern_type": by_type,
                "top_patterns": [{"pattern_id": p, "pattern_name": self.pname(p),
                                  "pattern_type": self.ptype(p),
                                  "status": self.catalog[p]["status"], "usage_count": ps[p][0],
                                  "first_used_at": ps[p][1], "last_used_at": ps[p][2]}
                                 for p in top]}

    def lifecycle(self, days, lifetime_override, limit, agents_limit, at):
        cut = at - days * DAY
        use = self.usage()
        agents = self.agent_rows()
        lt = ({"default": lifetime_override, "by_type": {}} if lifetime_override
              else LIFETIME)
        still, never, stale = [], [], []
        for pid, row in self.catalog.items():
            last = self.last_used(pid)
            base = {"pattern_id": pid, "pattern_name": self.pname(pid),
                    "pattern_type": self.ptype(pid), "status": row["status"]}
            if row["status"] != "active":
                if last is not None and last >= cut:
                    ag = [{"agent_name": a, "usage_count": ps[pid][0], "last_used_at": ps[pid][2]}
                          for a, ps in agents.items() if pid in ps and ps[pid][2] >= cut]
                    ag.sort(key=lambda x: (-x["last_used_at"].timestamp(), bkey(x["agent_name"])))
                    still.append(dict(base, usage_count=use[pid], last_used_at=last,
                                      days_since_last_use=days_floor(at, last),
                                      agent_count=len(ag), agents=ag[:agents_limit]))
            elif last is None:
                life = lt["by_type"].get(self.ptype(pid), lt["default"])
                if row["created"] <= at - life * DAY:
                    never.append(dict(base, created_at=row["created"],
                                      age_days=days_floor(at, row["created"]),
                                      lifetime_days=life))
            elif last < cut:
                stale.append(dict(base, usage_count=use[pid], last_used_at=last,
                                  days_since_last_use=days_floor(at, last)))
        still.sort(key=lambda x: (-x["last_used_at"].timestamp(), bkey(x["pattern_id"])))
        never.sort(key=lambda x: (x["created_at"], bkey(x["pattern_id"])))
        stale.sort(key=lambda x: (x["last_used_at"], bkey(x["pattern_id"])))
        return {"days": days, "lifetime_days": lt, "deprecated_in_use": still[:limit],
                "potentially_stale": never[:limit], "not_used_recently": stale[:limit],
                "counts": {"deprecated_in_use": len(still), "potentially_stale": len(never),
                           "not_used_recently": len(stale)}}


# ---------------------------------------------------------------- the data

T0 = t0_of(now())
AGENTS = ["agent-a", "agent-b", "agent-c", "agent/x y", "\u00e4gent-\u00fc", None]
SP = "sp/ace x"
UNI = "\u00fc-pat"


def at(days, delta_h=0, minute=0, second=0, micro=0):
    """T0 - days - 12 h + delta_h hours (+ minute, second, micro); delta_h in -10..9."""
    assert -10 <= delta_h <= 9 and minute <= 50
    return T0 - days * DAY - 12 * HOUR + dt.timedelta(hours=delta_h, minutes=minute,
                                                      seconds=second, microseconds=micro)


CATALOG = [
    # id, name, type, status, created (days ago)
    ("alpha", "Alpha", "code", None, 200),
    ("beta", None, "design", "active", 150),
    ("gamma", "Gamma", "ops", "deprecated", 100),
    ("delta", None, "code", "retired", 300),
    ("iota", None, "design", "deprecated", 90),
    ("kappa", "Kappa", "code", None, 80),
    (SP, "Slash space", "code", None, 60),
    (UNI, None, None, None, 50),
    ("eps", None, "ops", None, 40),         # never used, past the ops lifetime (30)
    ("zeta", None, "design", None, 100),    # never used, within the design lifetime (180)
    ("eta", "Eta", None, None, 120),        # never used, no type: default lifetime (90)
    ("theta", None, "code", None, 10),      # never used, young
    ("omicron", None, "ops", "retired", 400),  # never used, not active: no contradiction
]


def weight(pid, d):
    """How likely an event of day d (days ago) references pid."""
    return {
        "alpha": 0.5,
        "beta": 0.7 if d < 7 else 0.15,
        "gamma": 0.3 if d < 12 else 0.1,
        "delta": 0.0,
        "iota": 0.3 if d >= 40 else 0.0,
        "kappa": 0.4 if d >= 33 else 0.0,
        SP: 0.2,
        UNI: 0.25 if d % 3 == 0 else 0.05,
        "falling": 0.05 if d < 7 else (0.6 if d < 14 else 0.2),
        "rising": 0.5 if d < 3 else 0.08,
        "flat": 0.3,
        "u-old": 0.3 if d >= 25 else 0.0,
    }.get(pid, 0.0)


POOL = ["alpha", "beta", "gamma", "delta", "iota", "kappa", SP, UNI, "falling", "rising",
        "flat", "u-old"]


def make_events(rng):
    """(event object, Event) pairs over days 0..44, a few specials included."""
    out = []
    for d in range(45):
        for k in range(rng.randint(8, 14)):
            ids = [p for p in POOL if rng.random() < weight(p, d)]
            if not ids:
                ids = ["flat"]
            if rng.random() < 0.2:
                ids.append(ids[0])  # a repeat in one event counts once
            rng.shuffle(ids)
            t = at(d, rng.randint(-10, 9), rng.randint(0, 50), rng.randint(0, 59),
                   rng.choice([0, 0, rng.randint(1, 999999)]))
            agent = rng.choice(AGENTS)
            out.append(event(ids, agent, t))
    # Exactly at the pair limit (pairs recorded) and above it (counted instead).
    out.append(event(["alpha", "beta", "gamma", "flat"], "agent-a", at(3, -2, 5)))
    out.append(event(["alpha", "beta", "gamma", "flat", "rising"], "agent-b", at(3, -1, 5)))
    out.append(event(["alpha", "beta", "gamma", "flat", "rising", "alpha"], "agent-b",
                     at(4, 1, 5)))
    out.append(event(["alpha"], "agent-a", at(20, 0, 10)))  # the bucket late events add to
    out.append(event([], "agent-a", at(2, 0, 1)))  # no pattern: not in events_with_patterns
    out.append(event(["delta"], "agent-c", at(2, 3, 7)))
    out.append(event(["delta", UNI], "agent/x y", at(5, 3, 7)))
    return out


def event(ids, agent, t):
    obj = {"patterns": list(ids), "timestamp": iso(t)}
    if agent is not None:
        obj["agent_name"] = agent
    return obj, Event(t, agent, ids)


# ---------------------------------------------------------------- helpers


class Ctx:
    def __init__(self, client, model, db, binary=None, config=None):
        self.c = client
        self.m = model
        self.db = db
        self.binary = binary
        self.config = config


def qs(**kw):
    parts = ["%s=%s" % (k, q(str(v))) for k, v in kw.items() if v is not None]
    return ("?" + "&".join(parts)) if parts else ""


def get_json(ctx, name, path):
    lo = now()
    r = ctx.c.get(path)
    hi = now()
    if not R.check(name + ": 200 JSON", r.status == 200 and r.is_json(), r):
        return None, lo, hi
    return r.json, lo, hi


def compare(name, got, wants):
    """Passes when got matches one of wants (expectations at the request's bounds)."""
    best = None
    for w in wants:
        d = diff(got, w)
        if not d:
            return R.check(name, True)
        if best is None or len(d) < len(best):
            best = d
    return R.check(name, False, "\n".join(best[:12]))


def check(ctx, name, path, expect):
    """GET path; expect(at) gives the expectation for a request made at time `at`."""
    got, lo, hi = get_json(ctx, name, path)
    if got is None:
        return None
    wants = [expect(lo)]
    if t0_of(hi) != t0_of(lo):
        wants.append(expect(hi))
    compare(name, got, wants)
    return got


def check_422(name, r, param):
    ok = (r.status == 422 and r.is_json() and isinstance(r.json.get("detail"), list)
          and len(r.json["detail"]) >= 1)
    if ok:
        d = r.json["detail"][0]
        ok = (isinstance(d, dict) and d.get("loc") == ["query", param]
              and isinstance(d.get("msg"), str) and d["msg"] != ""
              and isinstance(d.get("type"), str) and d["type"] != "")
    return R.check(name + ": 422 naming query parameter " + param, ok, r)


def send(ctx, name, pairs):
    body = "\n".join(json.dumps(o, ensure_ascii=i % 2 == 0) for i, (o, _) in enumerate(pairs))
    lo = now()
    r = ctx.c.call("POST", "/api/patterns/usage/events?topic=agent-actions", body=body + "\n",
                   ctype="application/x-ndjson", timeout=20)
    want = {"topic": "agent-actions", "accepted": len(pairs), "dead_lettered": 0,
            "patterns_counted": sum(len(e.distinct) for _, e in pairs)}
    if R.check(name + ": 200", r.status == 200 and r.is_json(), r):
        R.eq(name + ": answer", r.json, want)
    ctx.m.ingested([e for _, e in pairs], lo)


# ---------------------------------------------------------------- phases


def phase_catalog(ctx):
    for pid, name, ptype, status, days in CATALOG[:7]:
        body = {"created_at": iso(at(days))}
        for k, v in (("pattern_name", name), ("pattern_type", ptype), ("status", status)):
            if v is not None:
                body[k] = v
        lo = now()
        r = ctx.c.call("PUT", "/api/patterns/" + q(pid), body=body)
        if R.check("PUT %s: 200" % pid, r.status == 200, r):
            ctx.m.register(dict(body, pattern_id=pid), lo)
    arr = []
    for pid, name, ptype, status, days in CATALOG[7:]:
        p = {"pattern_id": pid, "created_at": iso(at(days))}
        for k, v in (("pattern_name", name), ("pattern_type", ptype), ("status", status)):
            if v is not None:
                p[k] = v
        arr.append(p)
    lo = now()
    r = ctx.c.call("POST", "/api/patterns", body=arr)
    if R.check("POST /api/patterns with statuses: 200", r.status == 200, r):
        for p in arr:
            ctx.m.register(p, lo)
    # Bad statuses are refused, whole requests.
    for st in ("archived", "Active", 3):
        r = ctx.c.call("PUT", "/api/patterns/alpha", body={"status": st})
        R.check("PUT status %r: 400" % (st,), r.status == 400 and r.is_json()
                and "status" in str(r.json.get("detail")), r)
    r = ctx.c.call("POST", "/api/patterns", body=[{"pattern_id": "new-1"},
                                                  {"pattern_id": "new-2", "status": "gone"}])
    R.check("POST with one bad status: 400 naming pattern 2", r.status == 400
            and "pattern 2" in str(r.json.get("detail")), r)
    # An update that does not name the status keeps it; one that does changes it.
    r = ctx.c.call("PUT", "/api/patterns/gamma", body={"pattern_name": "Gamma"})
    R.check("PUT gamma without status: 200", r.status == 200, r)
    r = ctx.c.call("POST", "/api/patterns", body=[{"pattern_id": "kappa", "status": "deprecated"}])
    r2 = ctx.c.call("PUT", "/api/patterns/kappa", body={"status": "active"})
    R.check("status changes by POST then PUT: 200", r.status == 200 and r2.status == 200, (r, r2))
    rows = psql(ctx.db, "SELECT pattern_id || ':' || status FROM pattern_lineage_nodes "
                        "WHERE pattern_id IN ('gamma', 'kappa', 'delta', 'alpha', 'omicron') "
                        "ORDER BY 1").split()
    R.eq("statuses stored", rows, ["alpha:active", "delta:retired", "gamma:deprecated",
                                   "kappa:active", "omicron:retired"])
    r = ctx.c.get("/openapi.json")
    sch = (((r.json or {}).get("paths", {}).get("/api/patterns/{pattern_id}", {}).get("put", {})
            .get("requestBody", {}).get("content", {}).get("application/json", {})
            .get("schema", {}).get("properties", {}).get("status", {})))
    R.eq("openapi: catalog status enum", sch.get("enum"), ["active", "deprecated", "retired"])


def phase_events(ctx):
    rng = random.Random(4)
    evs = make_events(rng)
    # Shuffled across batches and inside them: late and out-of-order events everywhere.
    rng.shuffle(evs)
    n = 8
    for i in range(n):
        send(ctx, "POST events batch %d" % (i + 1), evs[i::n])
    # Late events for an old hour that already has a bucket (make_events put one there) and for
    # the hour before it.
    hour = floor_hour(at(20, 0, 10))
    frm, to = hour - 2 * HOUR, hour + 3 * HOUR
    path = "/api/patterns/usage/alpha/timeseries" + qs(**{"from": iso(frm), "to": iso(to)})
    before, _, _ = get_json(ctx, "series around a late event (before)", path)
    late = [event(["alpha"], "agent-late", at(20, 0, 40, 59)),
            event(["alpha", "flat"], "agent-late", at(20, -1, 30))]
    send(ctx, "POST late events", late)
    after, _, _ = get_json(ctx, "series around a late event (after)", path)
    if before and after:
        b = [p["usage_count"] for p in before["points"]]
        a = [p["usage_count"] for p in after["points"]]
        want = list(b)
        want[2] += 1
        want[1] += 1
        R.eq("late events land in the buckets of their event time", a, want)


def verify_trends(ctx, label, windows):
    m = ctx.m
    for w in windows:
        for direction in ("increasing", "decreasing"):
            for limit in (None, 3):
                path = "/api/patterns/usage/trends" + qs(window_days=w, direction=direction,
                                                         limit=limit)
                got = check(ctx, "trends w=%d %s limit=%s%s" % (w, direction, limit, label), path,
                            lambda t, w=w, d=direction, lim=limit: m.trends(
                                w, d, lim or 20, t0_of(t)))
                if got is None or limit is not None:
                    continue
                # /{pattern_id} reports the same trend, with the same code.
                for item in got.get("patterns", [])[:4]:
                    pid = item.get("pattern_id")
                    r = ctx.c.get("/api/patterns/usage/%s%s" % (q(pid), qs(window_days=w)))
                    R.check("/%s?window_days=%d trend equals /trends'%s" % (pid, w, label),
                            r.status == 200 and (r.json.get("trend"), r.json.get(
                                "trend_percentage")) == (item["trend"], item["trend_percentage"]),
                            (r, item))
    got = check(ctx, "trends defaults" + label, "/api/patterns/usage/trends",
                lambda t: m.trends(7, "increasing", 20, t0_of(t)))
    R.check("trends fixture: rising and falling patterns exist", got is not None and all(
        m.trends(7, d, 20, T0)["patterns"] for d in ("increasing", "decreasing")), "fixture")
    for pid in ("alpha", "beta", "falling", UNI):
        for w in (1, 7, 30):
            r = ctx.c.get("/api/patterns/usage/%s%s" % (q(pid), qs(window_days=w)))
            want = {m.pattern_trend(pid, w, T0), m.pattern_trend(pid, w, t0_of(now()))}
            R.check("/%s?window_days=%d trend%s" % (pid, w, label), r.status == 200 and (
                r.json.get("trend"), r.json.get("trend_percentage")) in want, (r, want))


def verify_series(ctx, label):
    m = ctx.m
    start = T0 - 46 * DAY
    for pid in sorted(m.usage(), key=bkey):
        base = "/api/patterns/usage/%s/timeseries" % q(pid)
        for bucket, frm, to in (("hour", start, T0), ("day", start + 30 * dt.timedelta(
                minutes=1), T0 + 5 * HOUR), ("hour", T0 - 40 * DAY - dt.timedelta(
                hours=7, minutes=30), T0 - 20 * DAY)):
            path = base + qs(bucket=bucket, **{"from": iso(frm), "to": iso(to)})
            check(ctx, "timeseries %s %s %s..%s%s" % (pid, bucket, iso(frm), iso(to), label),
                  path, lambda t, p=pid, b=bucket, f=frm, e=to: m.timeseries(p, b, f, e))
    # Defaults: the last 7 days of hours, the last 30 days.
    check(ctx, "timeseries defaults (hour)" + label, "/api/patterns/usage/beta/timeseries",
          lambda t: m.timeseries("beta", "hour", t0_of(t) - 7 * DAY, t0_of(t)))
    check(ctx, "timeseries defaults (day)" + label,
          "/api/patterns/usage/beta/timeseries?bucket=day",
          lambda t: m.timeseries("beta", "day", floor_day(t) + DAY - 30 * DAY,
                                 floor_day(t) + DAY))
    # Exactly 10000 buckets is allowed; an offset in from/to (+ sent unencoded reads as space).
    frm = T0 - 10000 * HOUR
    check(ctx, "timeseries of exactly 10000 hours" + label, "/api/patterns/usage/alpha/timeseries"
          + qs(**{"from": iso(frm), "to": iso(T0)}),
          lambda t: m.timeseries("alpha", "hour", frm, T0))
    f2 = (T0 - 3 * DAY).astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30)))
    path = "/api/patterns/usage/alpha/timeseries?bucket=day&from=" + f2.isoformat()
    check(ctx, "timeseries with an unencoded +05:30 offset" + label, path,
          lambda t: m.timeseries("alpha", "day", T0 - 3 * DAY, floor_day(t) + DAY))


def verify_heatmaps(ctx, label, day_list):
    m = ctx.m
    tzs = [(None, 0), ("+00:00", 0), ("+05:30", 330), ("-03:00", -180), ("-09:30", -570),
           ("+14:00", 840), ("-14:00", -840)]
    for days in day_list:
        for tz, minutes in tzs:
            check(ctx, "heatmap days=%d tz=%s%s" % (days, tz, label),
                  "/api/patterns/usage/heatmap" + qs(days=days, tz=tz),
                  lambda t, d=days, mi=minutes: m.heatmap(None, d, mi, t0_of(t)))
        for pid in ("alpha", "gamma", SP, UNI, "kappa"):
            for tz, minutes in tzs[1:4]:
                check(ctx, "heatmap %s days=%d tz=%s%s" % (pid, days, tz, label),
                      "/api/patterns/usage/%s/heatmap%s" % (q(pid), qs(days=days, tz=tz)),
                      lambda t, p=pid, d=days, mi=minutes: m.heatmap(p, d, mi, t0_of(t)))
    check(ctx, "heatmap default days (30)" + label, "/api/patterns/usage/heatmap",
          lambda t: m.heatmap(None, 30, 0, t0_of(t)))
    check(ctx, "heatmap tz=+05:30 sent unencoded" + label,
          "/api/patterns/usage/heatmap?tz=+05:30", lambda t: m.heatmap(None, 30, 330, t0_of(t)))


def verify_cooccurrence(ctx, label):
    m = ctx.m
    for pid in sorted(m.usage(), key=bkey):
        for sort in ("count", "lift", "jaccard"):
            for limit in (None, 2):
                check(ctx, "cooccurring %s sort=%s limit=%s%s" % (pid, sort, limit, label),
                      "/api/patterns/usage/%s/cooccurring%s" % (q(pid), qs(sort=sort,
                                                                             limit=limit)),
                      lambda t, p=pid, s=sort, lim=limit: m.cooccurring(p, lim or 20, s))
    # 1, 2 and 3 within a small pattern_cooccurrence_top (phase_merges) skip the pending lists
    # of patterns whose pairs cannot rank; 5 and 100 beyond it read every list
    for limit in (None, 1, 2, 3, 5, 100):
        check(ctx, "cooccurrence/top limit=%s%s" % (limit, label),
              "/api/patterns/usage/cooccurrence/top" + qs(limit=limit),
              lambda t, lim=limit: m.top_pairs(lim or 20))
    pairs, over = m.pairs()
    R.check("fixture: events over the pair limit exist, and pairs", over >= 2 and pairs, over)
    r = ctx.c.get("/api/patterns/usage/eps/cooccurring")
    R.check("cooccurring of a pattern used with nothing: empty list" + label,
            r.status == 200 and r.json.get("cooccurring") == [], r)


def verify_agents(ctx, label):
    m = ctx.m
    for limit, offset in ((None, None), (2, 0), (2, 2), (3, 5), (10, 100)):
        check(ctx, "agents limit=%s offset=%s%s" % (limit, offset, label),
              "/api/agents" + qs(limit=limit, offset=offset),
              lambda t, lim=limit, off=offset: m.agents(lim or 100, off or 0))
    for a in sorted(m.agent_rows(), key=bkey):
        for limit in (None, 2):
            check(ctx, "profile %s limit=%s%s" % (a, limit, label),
                  "/api/agents/%s/profile%s" % (q(a), qs(limit=limit)),
                  lambda t, ag=a, lim=limit: m.profile(ag, lim or 10))


def verify_lifecycle(ctx, label):
    m = ctx.m
    for days, lifetime, limit, alim in ((None, None, None, None), (60, None, None, 1),
                                        (7, None, 2, 2), (30, 50, None, None), (365, 1, 1, 50)):
        check(ctx, "lifecycle days=%s lifetime_days=%s limit=%s agents_limit=%s%s" % (
              days, lifetime, limit, alim, label),
              "/api/patterns/usage/lifecycle" + qs(days=days, lifetime_days=lifetime,
                                                   limit=limit, agents_limit=alim),
              lambda t, d=days, lt=lifetime, lim=limit, al=alim: m.lifecycle(
                  d or 30, lt, lim or 100, al or 10, t))
    lc = m.lifecycle(30, None, 100, 10, now())
    R.check("fixture: a deprecated pattern used by more agents than agents_limit=1", any(
        p["agent_count"] > 1 for p in m.lifecycle(60, None, 100, 1, now())["deprecated_in_use"]),
        "fixture")
    R.check("fixture: every lifecycle list has entries",
            all(lc[k] for k in ("deprecated_in_use", "potentially_stale", "not_used_recently")),
            lc["counts"])


def verify_all(ctx, label=""):
    verify_trends(ctx, label, (1, 7, 14, 20, 30))
    verify_series(ctx, label)
    verify_heatmaps(ctx, label, (30, 60))
    verify_cooccurrence(ctx, label)
    verify_agents(ctx, label)
    verify_lifecycle(ctx, label)


def phase_merges(ctx):
    """Co-occurrence, agent and lifecycle answers are the same whether the flushed lists are
    pending, partly folded or all folded into pattern_lists and agent_lists, and whatever the
    size of pattern_cooccurrence_top (a small one makes /cooccurrence/top read folded lists of
    the patterns whose pending pairs might beat its pairs, or all of them)."""
    def state():
        out = psql(ctx.db, "SELECT (SELECT count(*) FROM pattern_lists), "
                   "(SELECT count(*) FROM pattern_lists_pending), "
                   "(SELECT count(*) FROM pattern_cooccurrence_top), "
                   "(SELECT count(*) FROM agent_lists), "
                   "(SELECT count(*) FROM agent_lists_pending)")
        return tuple(int(x) for x in out.strip().split("|"))

    def fold(*args, cmd="fold"):
        env = dict(os.environ, DATABASE_URL=ctx.db)
        env.pop("PATTERNTRACK_ROOT", None)
        p = subprocess.run([ctx.binary, cmd, "--config", ctx.config] +
                           list(args), cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=60)
        R.check("patterntrack %s %s exits with 0" % (cmd, " ".join(args)),
                p.returncode == 0, p.stdout + p.stderr)
        return p.stdout

    def keep(n):
        psql(ctx.db, "CREATE OR REPLACE FUNCTION pt_cooccurrence_top_keep() RETURNS INTEGER "
             "LANGUAGE sql IMMUTABLE AS $$ SELECT %d $$; SELECT pt_rebuild_cooccurrence_top()"
             % n)

    merged, pending, _, agents, agents_pending = state()
    R.check("folding off: every list verified above was pending",
            merged == 0 and pending > 0 and agents == 0 and agents_pending > 0,
            (merged, pending, agents, agents_pending))
    # the old name of the command and its option still work
    out = fold("--patterns", "1", cmd="merge-cooccurrence")
    merged, pending, top, agents, agents_pending = state()
    R.check("fold of one owner: one pattern's or agent's lists folded, others stay pending",
            merged + agents == 1 and pending > 0 and "of 1 patterns and agents" in out,
            (merged, pending, top, agents, out))
    # The engine did not write this: answers it caches for 1 s (cache = true routes) may predate it.
    time.sleep(1.1)
    verify_cooccurrence(ctx, " (part folded)")
    verify_agents(ctx, " (part folded)")
    verify_lifecycle(ctx, " (part folded)")
    keep(2)
    fold("--owners", "3")
    merged, pending, top, agents, agents_pending = state()
    R.check("a top of 2 pairs, 4 owners folded, others pending",
            merged + agents == 4 and pending + agents_pending > 0 and top == 2,
            (merged, pending, top, agents, agents_pending))
    time.sleep(1.1)
    verify_cooccurrence(ctx, " (top of 2)")
    verify_agents(ctx, " (part folded, more)")
    keep(1000)
    fold()
    merged, pending, top, agents, agents_pending = state()
    R.check("fold folded the rest", merged > 4 and pending == 0 and agents_pending == 0,
            (merged, pending, agents_pending))
    truth = psql(ctx.db, "SELECT count(*) FROM pattern_cooccurrence").strip()
    R.eq("pattern_cooccurrence_top holds every folded pair (fewer than 1000)", top,
         int(truth))
    time.sleep(1.1)
    verify_cooccurrence(ctx, " (all folded)")
    verify_agents(ctx, " (all folded)")
    verify_lifecycle(ctx, " (all folded)")


def snapshot(ctx):
    """The answers the rollup must not change (see the module docstring)."""
    paths = []
    for pid in sorted(ctx.m.usage(), key=bkey):
        paths += ["/api/patterns/usage/%s/timeseries?bucket=day&from=%s&to=%s" % (
            q(pid), q(iso(T0 - 50 * DAY)), q(iso(T0))), "/api/patterns/usage/" + q(pid),
            "/api/patterns/usage/%s/cooccurring?limit=100" % q(pid)]
    paths += ["/api/patterns/usage/trends?window_days=%d&direction=%s" % (w, d)
              for w in (1, 7, 14) for d in ("increasing", "decreasing")]
    paths += ["/api/patterns/usage/heatmap?days=30", "/api/patterns/usage/alpha/heatmap?days=30",
              "/api/agents?limit=1000", "/api/patterns/usage/cooccurrence/top?limit=100",
              "/api/patterns/usage/lifecycle?days=60", "/api/patterns/usage/summary"]
    paths += ["/api/agents/%s/profile?limit=100" % q(a) for a in ctx.m.agent_rows()]
    out = {}
    for p in paths:
        r = ctx.c.get(p)
        body = r.json
        if isinstance(body, dict):
            # where the windows are (checked against the model elsewhere) moves with the clock
            for k in ("days_since_last_use", "window_end", "recent_window_start",
                      "previous_window_start", "from", "to"):
                body.pop(k, None)
        out[p] = (r.status, body)
    return out


def phase_rollup(ctx):
    m = ctx.m
    before = snapshot(ctx)
    cut = T0 - 30 * DAY
    day_cut = floor_day(cut)
    n = int(psql(ctx.db, "SELECT pt_rollup('%s'::timestamptz)" % iso(cut)).strip())
    m.rollup(day_cut)
    # The engine did not write this: answers it caches for 1 s (cache = true routes) may predate it.
    time.sleep(1.1)
    R.eq("pt_rollup wrote one daily row per (pattern, rolled-up day)", n,
         len(m.daily()))
    rest = psql(ctx.db, "SELECT count(*) FROM pattern_usage_hourly WHERE hour < '%s'"
                % iso(day_cut)).strip()
    R.eq("no hourly bucket left before the cut", rest, "0")
    R.check("fixture: the rollup moved events that trends w=20/30 and heatmaps of 60 days see",
            any(e.rolled and e.t >= T0 - 60 * DAY for e in m.used()), day_cut)
    after = snapshot(ctx)
    changed = [p for p in before if before[p] != after[p]]
    R.check("rollup: answers the daily resolution can give are unchanged (%d compared)"
            % len(before), not changed, "\n".join(
                "%s:\n  before %s\n  after  %s" % (p, json.dumps(before[p])[:300],
                                                    json.dumps(after[p])[:300])
                for p in changed[:5]))
    # Totals never change: every pattern's daily series sums to its usage count.
    for pid in ("alpha", "kappa", "iota", "u-old"):
        r = ctx.c.get("/api/patterns/usage/%s/timeseries?bucket=day&from=%s&to=%s" % (
            q(pid), q(iso(T0 - 60 * DAY)), q(iso(T0))))
        R.eq("rollup: %s daily series total == usage_count" % pid,
             r.json.get("total") if r.json else None, m.usage(pid))
    # Hour-resolution answers over rolled-up days: null hours, rolled_up days and a note.
    r = ctx.c.get("/api/patterns/usage/kappa/timeseries?from=%s&to=%s" % (
        q(iso(T0 - 44 * DAY)), q(iso(T0 - 30 * DAY))))
    R.check("rollup: hourly series over rolled-up days has null hours and rolled_up",
            r.status == 200 and any(p["usage_count"] is None for p in r.json["points"])
            and r.json["rolled_up"] and r.json.get("resolution_note"), r)


def phase_after_rollup(ctx):
    # A late event for a rolled-up day lands in an hourly bucket again: the day series stays
    # exact, the hourly one shows the whole day in rolled_up.
    t = at(41, 2, 3)
    send(ctx, "POST a late event into a rolled-up day", [event(["kappa", "alpha"], "agent-c", t)])
    verify_all(ctx, " (after rollup)")


def phase_retype(ctx):
    # The catalog changes the type of used patterns: a registered one's by PUT, an unregistered
    # one gets its first by POST. Agent profiles (kept per agent and type by the flush) and
    # everything else that shows types follow.
    m = ctx.m
    use = m.usage()
    typed = sorted((p for p, r in m.catalog.items() if r["registered"] and r["type"] and use[p]),
                   key=lambda p: (-use[p], bkey(p)))
    untyped = sorted((p for p, r in m.catalog.items() if not r["registered"] and use[p]),
                     key=lambda p: (-use[p], bkey(p)))
    if not R.check("fixture: used patterns with and without a registration", typed and untyped,
                   (len(typed), len(untyped))):
        return
    pid = typed[0]
    body = {"pattern_type": m.ptype(pid) + "-v2"}
    lo = now()
    r = ctx.c.call("PUT", "/api/patterns/" + q(pid), body=body)
    if R.check("PUT a new type for %s: 200" % pid, r.status == 200, r):
        m.register(dict(body, pattern_id=pid), lo)
    arr = [{"pattern_id": p, "pattern_type": "late-" + str(i % 2)} for i, p in enumerate(untyped[:3])]
    lo = now()
    r = ctx.c.call("POST", "/api/patterns", body=arr)
    if R.check("POST types for used, unregistered patterns: 200", r.status == 200, r):
        for p in arr:
            m.register(p, lo)
    verify_all(ctx, " (after type changes)")


def phase_edges(ctx):
    c = ctx.c
    ranged = [
        ("/api/patterns/usage/trends", "limit", 1, 100, 20),
        ("/api/patterns/usage/trends", "window_days", 1, 90, 7),
        ("/api/patterns/usage/alpha", "window_days", 1, 90, 7),
        ("/api/patterns/usage/heatmap", "days", 1, 365, 30),
        ("/api/patterns/usage/alpha/heatmap", "days", 1, 365, 30),
        ("/api/patterns/usage/alpha/cooccurring", "limit", 1, 100, 20),
        ("/api/patterns/usage/cooccurrence/top", "limit", 1, 100, 20),
        ("/api/patterns/usage/lifecycle", "days", 1, 365, 30),
        ("/api/patterns/usage/lifecycle", "lifetime_days", 1, 36500, None),
        ("/api/patterns/usage/lifecycle", "limit", 1, 1000, 100),
        ("/api/patterns/usage/lifecycle", "agents_limit", 1, 50, 10),
        ("/api/agents", "limit", 1, 1000, 100),
        ("/api/agents", "offset", 0, 1000000, 0),
        ("/api/agents/agent-a/profile", "limit", 1, 100, 10),
    ]
    for path, name, lo, hi, _ in ranged:
        for v in (lo - 1, hi + 1, "x", "1.5", ""):
            check_422("GET %s?%s=%s" % (path, name, v), c.get("%s?%s=%s" % (path, name, v)),
                      name)
        for v in (lo, hi):
            r = c.get("%s?%s=%s" % (path, name, v))
            R.check("GET %s?%s=%s: 200" % (path, name, v), r.status == 200, r)
    enums = [("/api/patterns/usage/trends", "direction", "up"),
             ("/api/patterns/usage/trends", "direction", "Increasing"),
             ("/api/patterns/usage/alpha/timeseries", "bucket", "week"),
             ("/api/patterns/usage/alpha/cooccurring", "sort", "support")]
    for path, name, v in enums:
        check_422("GET %s?%s=%s" % (path, name, v), c.get("%s?%s=%s" % (path, name, v)), name)
    for tz in ("5", "+5:00", "+05:60", "+15:00", "-14:01", "UTC", "Z", "+0530", "%2B05:30x"):
        for path in ("/api/patterns/usage/heatmap", "/api/patterns/usage/alpha/heatmap"):
            check_422("GET %s?tz=%s" % (path, tz), c.get("%s?tz=%s" % (path, tz)), "tz")
    ts = "/api/patterns/usage/alpha/timeseries"
    for qstr, param in (("from=yesterday", "from"), ("to=2025-13-01", "to"),
                        ("from=2025-02-30T00:00:00Z", "from"), ("to=" + "1" * 65, "to"),
                        ("from=2025-01-02&to=2025-01-02", "to"),
                        ("from=2025-01-03&to=2025-01-02", "to"),
                        ("from=2020-01-01&to=2021-02-24", "to"),  # 10080 hours
                        ("bucket=day&from=1990-01-01&to=2020-01-01", "to")):
        check_422("GET %s?%s" % (ts, qstr), c.get("%s?%s" % (ts, qstr)), param)
    r = c.get(ts + "?bucket=day&from=2000-01-01&to=2025-01-01")
    R.check("timeseries of 9132 days: 200 with 9132 points", r.status == 200
            and len(r.json["points"]) == 9132, r)
    # Unknown pattern / agent: 404 with a detail.
    for path in ("/api/patterns/usage/nope/timeseries", "/api/patterns/usage/nope/heatmap",
                 "/api/patterns/usage/nope/cooccurring", "/api/agents/nobody/profile",
                 "/api/agents/%s/profile" % q("agent/x")):
        r = c.get(path)
        R.check("GET %s: 404 JSON with detail" % path, r.status == 404 and r.is_json()
                and isinstance(r.json.get("detail"), str), r)
    # Wrong methods.
    for path in ("/api/patterns/usage/trends", "/api/agents", "/api/patterns/usage/lifecycle"):
        R.eq("POST %s: 405" % path, c.call("POST", path, body={}).status, 405)


NEW_ROUTES = {
    "/api/patterns/usage/trends": {"limit": (1, 100, 20), "window_days": (1, 90, 7),
                                   "direction": ["increasing", "decreasing"]},
    "/api/patterns/usage/{pattern_id}/timeseries": {"bucket": ["hour", "day"], "from": None,
                                                    "to": None},
    "/api/patterns/usage/heatmap": {"days": (1, 365, 30), "tz": None},
    "/api/patterns/usage/{pattern_id}/heatmap": {"days": (1, 365, 30), "tz": None},
    "/api/patterns/usage/{pattern_id}/cooccurring": {"limit": (1, 100, 20),
                                                     "sort": ["count", "lift", "jaccard"]},
    "/api/patterns/usage/cooccurrence/top": {"limit": (1, 100, 20)},
    "/api/patterns/usage/lifecycle": {"days": (1, 365, 30), "lifetime_days": (1, 36500, None),
                                      "limit": (1, 1000, 100), "agents_limit": (1, 50, 10)},
    "/api/agents": {"limit": (1, 1000, 100), "offset": (0, 1000000, 0)},
    "/api/agents/{agent_name}/profile": {"limit": (1, 100, 10)},
    "/api/patterns/usage/{pattern_id}": {"include_trend": None, "window_days": (1, 90, 7)},
}
# The routes whose rows come as CSV too take format=json|csv (lua/pt/router.lua).
CSV = ["json", "csv"]
for _p in ("/api/patterns/usage/trends", "/api/patterns/usage/{pattern_id}/timeseries",
           "/api/patterns/usage/{pattern_id}/cooccurring", "/api/patterns/usage/cooccurrence/top",
           "/api/patterns/usage/lifecycle", "/api/agents", "/api/agents/{agent_name}/profile"):
    NEW_ROUTES[_p]["format"] = CSV


def phase_openapi(ctx):
    r = ctx.c.get("/openapi.json")
    if not R.check("GET /openapi.json: 200", r.status == 200 and r.is_json(), r):
        return
    paths = r.json.get("paths", {})
    for path, params in NEW_ROUTES.items():
        op = paths.get(path, {}).get("get")
        if not R.check("openapi: GET %s documented" % path, isinstance(op, dict), sorted(paths)):
            continue
        R.check("openapi: GET %s has a 200 response with a schema" % path,
                "schema" in op["responses"].get("200", {}).get("content", {}).get(
                    "application/json", {}), op.get("responses"))
        R.check("openapi: GET %s documents 422" % path, "422" in op["responses"], op["responses"])
        got = {p["name"]: p.get("schema", {}) for p in op.get("parameters", [])
               if p.get("in") == "query"}
        R.eq("openapi: GET %s query parameters" % path, sorted(got), sorted(params))
        for name, spec in params.items():
            s = got.get(name, {})
            if isinstance(spec, tuple):
                want = {"type": "integer", "minimum": spec[0], "maximum": spec[1]}
                if spec[2] is not None:
                    want["default"] = spec[2]
                R.eq("openapi: %s %s" % (path, name), {k: s.get(k) for k in want}, want)
            elif isinstance(spec, list):
                R.eq("openapi: %s %s enum" % (path, name), s.get("enum"), spec)
    tz = {p["name"]: p for p in paths.get("/api/patterns/usage/heatmap", {}).get("get", {}).get(
        "parameters", [])}.get("tz", {}).get("schema", {})
    R.eq("openapi: tz pattern and default", (tz.get("pattern"), tz.get("default")),
         ("^[+-][0-9]{2}:[0-9]{2}$", "+00:00"))


# ---------------------------------------------------------------- main


def main():
    def phases(ctx):
        R.phase("catalog", phase_catalog, ctx)
        R.phase("events", phase_events, ctx)
        R.phase("verify", verify_all, ctx)
        R.phase("co-occurrence merges", phase_merges, ctx)
        R.phase("parameter edges", phase_edges, ctx)
        R.phase("openapi", phase_openapi, ctx)
        R.phase("rollup", phase_rollup, ctx)
        R.phase("after rollup", phase_after_rollup, ctx)
        R.phase("type changes", phase_retype, ctx)

    return run_suite(R, DBNAME, CONFIG,
                     lambda c, server, db, binary: Ctx(c, Model(), db, binary, server.config),
                     phases, drop_db=True)


if __name__ == "__main__":
    sys.exit(main())
