"""Ground truth of the HTTP API integration test (tests/integration/test_api.py): the events
and catalog entries the test sent, and every answer of the usage API computed from them.

Owns: building events in the shapes the default agent-actions / manifest rules read, and the
expected PatternUsageStats, /top, /unused, /stale, /by-agent, /unknown and /summary answers.
It does no I/O.

Times: an event without a timestamp is counted at its arrival, which the test only knows as
an interval (sent .. answered), so every time here is a pair (lo, hi); a known time has
lo == hi. Checks accept any answer consistent with some point of the interval. The database
of the test uses the C collation, so orders are Python's string order.
"""

import datetime as dt
import json
import math
from fractions import Fraction

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
WINDOW = dt.timedelta(days=7)


def now():
    return dt.datetime.now(UTC)


def floor_hour(t):
    return t.replace(minute=0, second=0, microsecond=0)


def t0_of(t):
    """The end of the trend windows for a request at time t: the next whole UTC hour."""
    return floor_hour(t) + HOUR


def iso(t):
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += ".%06d" % t.microsecond
    return s + "Z"


def parse_iso(s):
    if not isinstance(s, str):
        return None
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else None


OFFSETS = [dt.timezone.utc, dt.timezone(dt.timedelta(hours=5, minutes=30)),
           dt.timezone(dt.timedelta(hours=-3))]


def render_time(t, variant):
    """The same instant in one of four spellings the engine must all read."""
    v = variant % 4
    if v == 0:
        return iso(t)
    if v == 3:
        return t.strftime("%Y-%m-%d %H:%M:%S") + (".%06d" % t.microsecond if t.microsecond
                                                  else "") + "+00:00"
    return t.astimezone(OFFSETS[v]).isoformat()


def valid_id(v):
    return isinstance(v, str) and 1 <= len(v.encode("utf-8")) <= 255 and "\0" not in v


def action_event(ids, agent, t, variant):
    """An agent-actions event referencing `ids` (in one of five shapes; repeats kept as given),
    agent None = no agent field, t None = no timestamp."""
    ts = render_time(t, variant) if t is not None else None
    shape = variant % 5
    ev = {}
    if shape == 0:
        ev["patterns"] = list(ids)
        if agent is not None:
            ev["agent_name"] = agent
        if ts is not None:
            ev["timestamp"] = ts
    elif shape == 1:
        ev["patterns"] = [{"pattern_id": i, "confidence": 0.5} for i in ids]
        if agent is not None:
            ev["agent_name"] = agent
        if ts is not None:
            ev["created_at"] = ts
        ev["action_details"] = {"pattern": "not-a-reference"}
    elif shape == 2:
        p = {"pattern_ids": list(ids)}
        if agent is not None:
            p["agent_name"] = agent
        if ts is not None:
            p["timestamp"] = ts
        ev["payload"] = p
    elif shape == 3:
        ev["metadata"] = {"patterns": [{"id": i} for i in ids]}
        ev["pattern_ids"] = list(ids[:1])  # the same ID again: still one use
        if agent is not None:
            ev["agent_name"] = agent
        if ts is not None:
            ev["timestamp"] = ts
    else:
        ev["patterns"] = [{"name": i} for i in ids]
        ev["payload"] = {}
        if agent is not None:
            ev["payload"]["agent_name"] = agent
        if ts is not None:
            ev["payload"]["timestamp"] = ts
    return ev


class Batch:
    """One POST of events to one topic: its items and what each must do."""

    def __init__(self, topic, fmt):
        self.topic = topic
        self.fmt = fmt  # "object", "array" or "ndjson"
        self.items = []  # (text or None for a blank NDJSON line, expectation)

    def event(self, obj, ids, agent, t):
        """An event object; ids = every reference in it (invalid ones included)."""
        self.items.append((json.dumps(obj, ensure_ascii=len(self.items) % 2 == 0),
                           {"ids": list(ids), "agent": agent or "unknown", "t": t}))

    def dead(self, text, reason):
        self.items.append((text, {"dead": reason}))

    def blank(self):
        self.items.append((None, None))

    def body(self):
        texts = [t for t, _ in self.items]
        if self.fmt == "object":
            assert len(texts) == 1
            return texts[0], "application/json"
        if self.fmt == "array":
            return "[\n" + ",\n  ".join(t for t in texts if t is not None) + "\n]", \
                "application/json"
        return "\n".join("" if t is None else t for t in texts) + "\n", "application/x-ndjson"

    def expected_answer(self):
        accepted = dead = counted = 0
        for text, e in self.items:
            if e is None:
                continue
            accepted += 1
            if "dead" in e:
                dead += 1
                continue
            valid = {i for i in e["ids"] if valid_id(i)}
            counted += len(valid)
            if any(not valid_id(i) for i in e["ids"]):
                dead += 1
        return {"topic": self.topic, "accepted": accepted, "dead_lettered": dead,
                "patterns_counted": counted}


class Truth:
    def __init__(self):
        self.catalog = {}  # id -> {"name", "type", "created": (lo, hi), "registered"}
        self.uses = {}  # id -> [(agent, lo, hi)]
        self.topics = {}  # topic -> {"events", "dead", "uses", "without", "reasons": {}}
        self.dead_payloads = []  # (topic, reason, text) of each item sent as a dead letter

    # ---- what the test sent ----

    def register(self, patterns, lo, hi):
        """A PUT or POST of catalog entries answered 200 between lo and hi; returns the
        expected {registered, created, updated}."""
        created = updated = 0
        for p in patterns:
            pid = p["pattern_id"]
            row = self.catalog.get(pid)
            c = p.get("created_at")
            ct = (parse_iso(c),) * 2 if c else None
            if row is None:
                created += 1
                self.catalog[pid] = {"name": p.get("pattern_name"), "type": p.get("pattern_type"),
                                     "created": ct or (lo, hi), "registered": True}
            else:
                updated += 1
                if p.get("pattern_name") is not None:
                    row["name"] = p["pattern_name"]
                if p.get("pattern_type") is not None:
                    row["type"] = p["pattern_type"]
                if ct:
                    row["created"] = ct
                row["registered"] = True
        return {"registered": len(patterns), "created": created, "updated": updated}

    def _topic(self, topic):
        return self.topics.setdefault(topic, {"events": 0, "dead": 0, "uses": 0, "without": 0,
                                              "reasons": {}})

    def ingested(self, batch, lo, hi):
        """A batch answered 200 between lo and hi: every event of it is counted."""
        st = self._topic(batch.topic)
        for text, e in batch.items:
            if e is None:
                continue
            st["events"] += 1
            if "dead" in e:
                st["dead"] += 1
                st["reasons"][e["dead"]] = st["reasons"].get(e["dead"], 0) + 1
                self.dead_payloads.append((batch.topic, e["dead"], text))
                continue
            valid = sorted({i for i in e["ids"] if valid_id(i)})
            if any(not valid_id(i) for i in e["ids"]):
                st["dead"] += 1
                st["reasons"]["invalid pattern id"] = st["reasons"].get("invalid pattern id",
                                                                        0) + 1
            if not valid:
                st["without"] += 1
            st["uses"] += len(valid)
            tl, th = (e["t"], e["t"]) if e["t"] is not None else (lo, hi)
            for pid in valid:
                self.uses.setdefault(pid, []).append((e["agent"], tl, th))
                if pid not in self.catalog:
                    self.catalog[pid] = {"name": None, "type": None, "created": (lo, hi),
                                         "registered": False}

    # ---- expected answers ----

    def ids(self):
        return sorted(self.catalog)

    def agents(self):
        return sorted({a for us in self.uses.values() for a, _, _ in us})

    def count(self, pid):
        return len(self.uses.get(pid, []))

    def first_last(self, pid, agent=None):
        us = [u for u in self.uses.get(pid, []) if agent is None or u[0] == agent]
        if not us:
            return None, None
        return (min(u[1] for u in us), min(u[2] for u in us)), \
            (max(u[1] for u in us), max(u[2] for u in us))

    def trend(self, pid, at):
        t0 = t0_of(at)
        recent = previous = 0
        for _, lo, _ in self.uses.get(pid, []):
            if t0 - WINDOW <= lo < t0:
                recent += 1
            elif t0 - 2 * WINDOW <= lo < t0 - WINDOW:
                previous += 1
        if previous == 0:
            return "insufficient_data", 0.0
        pct = round((recent - previous) / previous * 100.0, 2)
        if pct > 10:
            return "increasing", pct
        if pct < -10:
            return "decreasing", abs(pct)
        return "stable", abs(pct)

    def stats(self, pid, include_trend=True):
        """Expected PatternUsageStats; time fields are (lo, hi) ranges or None, trend is a
        function of the request time, days_since_last_use a function of (now_lo, now_hi)."""
        row = self.catalog[pid]
        first, last = self.first_last(pid)
        agents = sorted({u[0] for u in self.uses.get(pid, [])})
        return {
            "pattern_id": pid,
            "pattern_name": row["name"] if row["name"] is not None else pid,
            "pattern_type": row["type"] if row["type"] is not None else "unknown",
            "usage_count": self.count(pid),
            "last_used_at": last,
            "first_used_at": first,
            "used_by_agents": agents,
            "agent_count": len(agents),
            "registered": row["registered"],
            "_trend": include_trend,
        }

    def top(self, limit, pattern_type=None):
        ids = [i for i in self.ids() if pattern_type is None or self.catalog[i]["type"]
               == pattern_type or (pattern_type == "unknown" and self.catalog[i]["type"] is None)]
        ids.sort(key=lambda i: (-self.count(i), i))
        return ids[:limit]

    def unused(self, days, at):
        cut = at - days * DAY
        rows = [i for i in self.ids() if self.count(i) == 0 and self.catalog[i]["created"][1]
                <= cut]
        return sorted(rows, key=lambda i: (self.catalog[i]["created"][0], i))[:1000]

    def stale(self, days, at):
        cut = at - days * DAY
        rows = [i for i in self.ids() if self.count(i) > 0 and self.first_last(i)[1][1] < cut]
        return sorted(rows, key=lambda i: (self.first_last(i)[1][0], i))[:1000]

    def by_agent(self, agent, limit):
        mine = {}
        for pid, us in self.uses.items():
            n = sum(1 for u in us if u[0] == agent)
            if n:
                mine[pid] = n
        return sorted(mine, key=lambda i: (-mine[i], i))[:limit], mine

    def unknown(self, limit):
        rows = [i for i in self.ids() if not self.catalog[i]["registered"]]
        return sorted(rows, key=lambda i: (-self.count(i), i))[:limit]

    def summary(self):
        total = len(self.catalog)
        used = sum(1 for i in self.catalog if self.count(i) > 0)
        usage = sum(self.count(i) for i in self.catalog)

        def round1(fr):  # half up, as the seed's round() on these non-tie values
            return float(math.floor(fr * 10 + Fraction(1, 2))) / 10

        return {
            "total_patterns": total,
            "used_patterns": used,
            "unused_patterns": total - used,
            "total_usage": usage,
            "avg_usage_per_pattern": round1(Fraction(usage, total)) if total else 0.0,
            "usage_rate": round1(Fraction(used * 100, total)) if total else 0.0,
            "total_agents": len(self.agents()),
        }


def days_between(later, earlier):
    return math.floor((later - earlier).total_seconds() / 86400)
