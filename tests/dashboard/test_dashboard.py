#!/usr/bin/env python3
"""Browser test of the dashboard (web/, served at /dashboard/) in a real headless Chromium.

    python3 tests/dashboard/test_dashboard.py [PATH/TO/patterntrack]

Needs DATABASE_URL (PostgreSQL from `eval "$(scripts/services up)"`) and Debian's chromium
(or $CHROMIUM); Kafka is not used. The binary is argv[1], else $PT_BIN, else build/patterntrack.

It creates two databases of its own (pt_it_dashboard with seeded data, pt_it_dashboard_empty),
starts an engine on each (free loopback ports, KAFKA_ENABLE_CONSUMER=false), seeds patterns and
events through the API only, and drives Chromium over the DevTools pipe (cdp.py):

- static files: caching headers, every asset of the page is served, no external URL;
- the page against the seeded data: every number it shows equals the API's answer (summary,
  most used with its chart, unused, stale, trends, dead letters, chosen pattern, agents, and
  heatmap / co-occurrence when the engine serves them), every panel links to a JSON endpoint
  that answers, pattern IDs holding HTML stay text, no console error, no request leaves the
  engine's port;
- search, choosing a pattern, refresh in place (new events show up without a reload);
- a 400 px wide screen: no horizontal overflow;
- API errors (500, 422, not JSON, wrong shape, connection refused; injected with request
  interception), each shown in its panel;
- an engine with the seed's API only (its /openapi.json without the history and agent
  routes): fallbacks and "not available" messages, and no request to a missing route;
- the empty database: empty-state messages, zeros, no blank panel;
- reads guarded by a bearer token (the empty database's engine, reloaded with http_token and
  http_token_reads): the page opened as /dashboard/#token=TOKEN works and drops the token from
  the address bar; opened without it, its panels say a token is needed;
- PostgreSQL stopped (scripts/services stop pg; always started again): the live page and a
  fresh load say the database is unavailable, then recover by themselves.

Screenshots and DOM dumps go to build/test-output/ (or $PT_TEST_OUTPUT): their paths are
printed. Prints `N passed, M failed` last and exits 1 on any failure.
"""

import datetime as dt
import json
import os
import random
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import cdp  # noqa: E402
from api_harness import (Client, Results, ROOT, Server, engine_binary, free_port,  # noqa: E402
                         fresh_db, metric, parse_prometheus, poll, q, services)
from api_truth import HOUR, iso, now, t0_of  # noqa: E402

R = Results()
CONFIG = """-- written by tests/dashboard/test_dashboard.py
return { batch_timeout_ms = 100, log_level = "warn" }
"""
DB_FULL = "pt_it_dashboard"
DB_EMPTY = "pt_it_dashboard_empty"

XSS_ID = '<img src=x onerror="window.__xss=1">'
XSS_NAME = "<script>window.__xss=2</script> & \"quotes\" 'single'"
AGENTS = ["agent-alpha", "agent-beta", "agent-gamma", "agent <delta> & co", "polymorphic-agent"]
TYPES = ["code", "knowledge", "routing"]

T0 = t0_of(now())


def ago(days, shift=0, minute=0):
    """`days` days + 12 h (+ shift hours, |shift| <= 8) before the next whole hour: at least 4 h
    from every trend-window and day edge whenever the test runs."""
    return T0 - (24 * days + 12 + shift) * HOUR + dt.timedelta(minutes=minute)


# ---------------------------------------------------------------- seed data

class Seed:
    """What the test registers and sends, and the few facts it knows without asking the API."""

    def __init__(self):
        rnd = random.Random(6)
        self.catalog = []
        for i in range(24):
            self.catalog.append({"pattern_id": "p-%02d" % i,
                                 "pattern_name": "Pattern %02d %s" % (i, TYPES[i % 3]),
                                 "pattern_type": TYPES[i % 3],
                                 "created_at": iso(ago(40))})
        self.catalog.append({"pattern_id": XSS_ID, "pattern_name": XSS_NAME,
                             "pattern_type": "knowledge", "created_at": iso(ago(50))})
        for pid, days in (("u-old", 100), ("u-mid", 45), ("u-young", 5)):
            self.catalog.append({"pattern_id": pid, "pattern_name": "Unused " + pid,
                                 "pattern_type": "code", "created_at": iso(ago(days))})
        self.catalog.append({"pattern_id": "s-old", "pattern_name": "Stale one",
                             "pattern_type": "routing", "created_at": iso(ago(200))})
        self.events = []
        # p-i: 60 - 2i uses; every 4th rises (70 % in the last 7 days), the next falls (25 %)
        for i in range(24):
            n = 60 - 2 * i
            share = (0.7, 0.25, 0.5, 0.5)[i % 4]
            recent = int(round(n * share))
            for k in range(n):
                day = rnd.randint(0, 6) if k < recent else rnd.randint(7, 13)
                ids = ["p-%02d" % i]
                if i % 3 == 0 and k % 2 == 0:
                    ids.append("p-%02d" % ((i + 1) % 24))  # co-occurring pairs
                self.events.append((rnd.choice(AGENTS), ids,
                                    ago(day, rnd.randint(-8, 8), rnd.randint(0, 59))))
        for k in range(45):
            self.events.append((AGENTS[k % 5], [XSS_ID, "p-05"], ago(k % 14, k % 17 - 8, k)))
        self.events.append(("agent-old", ["s-old"], ago(120)))
        self.events.append(("agent-alpha", ["unregistered x/y"], ago(3, 2)))
        self.dead = [42, "not an object"]

    def body(self):
        out = [{"agent_name": a, "patterns": ids, "timestamp": iso(t)} for a, ids, t in self.events]
        return out[:20] + self.dead + out[20:]

    def counts(self):
        c = {}
        for _, ids, _ in self.events:
            for pid in set(ids):
                c[pid] = c.get(pid, 0) + 1
        return c

    def summary(self):
        c = self.counts()
        ids = {p["pattern_id"] for p in self.catalog} | set(c)
        return {"total_patterns": len(ids), "used_patterns": len(c),
                "total_usage": sum(c.values()),
                "total_agents": len({a for a, _, _ in self.events})}


# ---------------------------------------------------------------- page access

EXTRACT = r"""(() => {
  const t = e => e ? e.textContent.replace(/\s+/g, " ").trim() : null;
  const all = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const panels = {};
  all("section.panel").forEach(s => {
    const msg = s.querySelector(".msg"), body = s.querySelector(".body");
    panels[s.id.replace("panel-", "")] = {
      state: s.getAttribute("data-state"), msg: msg.hidden ? null : t(msg),
      body: !body.hidden, text: s.innerText.trim(), link: s.querySelector("a.json").href,
      visibleText: (msg.hidden ? "" : t(msg)) + (body.hidden ? "" : t(body)),
    };
  });
  const summary = {};
  all("#panel-summary dd[data-field]").forEach(d => summary[d.getAttribute("data-field")] = t(d));
  const top = all("#panel-top tbody tr").map(tr => ({
    id: tr.getAttribute("data-pattern-id"), name: t(tr.querySelector(".pname")),
    count: t(tr.querySelector("[data-field=usage_count]")) }));
  const ch = window.Chart && Chart.getChart(document.querySelector("#panel-top canvas"));
  const items = sel => all(sel).map(li => ({
    id: li.getAttribute("data-pattern-id"), text: t(li) }));
  return {
    state: document.body.getAttribute("data-state"),
    refreshCount: Number(document.body.getAttribute("data-refresh-count") || 0),
    status: t(document.getElementById("status")), engine: t(document.getElementById("engine")),
    banner: { hidden: document.getElementById("banner").hidden,
              text: t(document.getElementById("banner")),
              kind: document.getElementById("banner").getAttribute("data-kind") },
    panels, summary, top,
    chart: ch ? { labels: ch.data.labels.slice(), data: ch.data.datasets[0].data.slice() } : null,
    unused: items("#panel-unused .items li"), stale: items("#panel-stale .items li"),
    unusedHeadline: t(document.querySelector("#panel-unused .headline")),
    rising: items("#panel-trends .rising li[data-pattern-id]"),
    falling: items("#panel-trends .falling li[data-pattern-id]"),
    trendsNote: t(document.querySelector("#panel-trends .note")),
    trendsOverall: t(document.querySelector("#panel-trends .overall")),
    dead: t(document.querySelector("#panel-deadletters .value")),
    deadRows: all("#panel-deadletters tbody tr").map(tr => Array.from(tr.children).map(t)),
    dups: t(document.querySelector("#panel-deadletters .dups")),
    heat: all("#panel-heatmap .cell").map(c => [c.getAttribute("data-day"),
      Number(c.getAttribute("data-hour")), Number(c.getAttribute("data-count"))]),
    heatTz: t(document.querySelector("#panel-heatmap .tz")),
    chosen: t(document.querySelector("#panel-pattern .chosen")),
    pattern: Object.fromEntries(all("#panel-pattern [data-field]").map(e => [
      e.getAttribute("data-field"), t(e)])),
    matches: all("#panel-pattern .matches button").map(b => b.getAttribute("data-pattern-id")),
    cooc: all("#panel-cooccurring tbody tr").map(tr => ({ id: tr.getAttribute("data-pattern-id"),
      cells: all("td", tr).map(t) })),
    agents: all("#panel-agents .agent-list tr[data-agent]").map(tr => ({
      name: tr.getAttribute("data-agent"), cells: all("td", tr).map(t) })),
    agentShown: t(document.querySelector("#panel-agents .agent-name")),
    profile: all("#panel-agents .bars li").map(li => [
      li.getAttribute("data-pattern-type"), t(li.querySelector(".num"))]),
    profileMsg: t(document.querySelector("#panel-agents .profile-msg")),
    xss: [typeof window.__xss, document.querySelectorAll("img").length,
          document.querySelectorAll("script").length],
    url: location.href,
  };
})()"""

READY = ("document.body && document.body.getAttribute('data-state') === 'ready' && "
         "Number(document.body.getAttribute('data-refresh-count'))")


def page_num(text):
    """'1,234' / '96.6 %' / '28.1' as a number; None for '—' or garbage."""
    if text is None:
        return None
    s = re.sub(r"[,\s\u00a0\u202f%]", "", text)
    try:
        return float(s) if "." in s else int(s)
    except ValueError:
        return None


def snap(page):
    return page.eval(EXTRACT)


def wait_refresh(page, after, timeout=20):
    """Waits for a refresh that completed after refresh number `after`."""
    return page.wait_for("(%s) > %d" % (READY, after), timeout)


def no_blank_panel(name, d):
    blank = [k for k, p in d["panels"].items() if p["state"] == "loading" or not p["visibleText"]]
    R.check(name + ": no blank or still-loading panel", not blank,
            "blank: %s" % {k: d["panels"][k] for k in blank})


def page_problems(browser, page, allow_http_errors=False):
    """JavaScript exceptions, console errors and (unless allowed) failed resource loads."""
    bad = []
    for m, p in browser.events_of(page.session):
        if m == "Runtime.exceptionThrown":
            ex = p.get("exceptionDetails", {})
            bad.append("exception: %s" % ((ex.get("exception") or {}).get("description")
                                          or ex.get("text")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            bad.append("console.%s: %s" % (p.get("type"), [a.get("value", a.get("description"))
                                                          for a in p.get("args", [])]))
        elif m == "Log.entryAdded":
            e = p.get("entry", {})
            if e.get("level") == "error" and not (allow_http_errors
                                                  and e.get("source") == "network"):
                bad.append("log: %s %s" % (e.get("url", ""), e.get("text")))
        elif m == "handler.error":
            bad.append("interceptor: %s" % p)
    return bad


def requests_of(browser, page):
    return [p["request"]["url"]
            for _, p in browser.events_of(page.session, "Network.requestWillBeSent")]


# ---------------------------------------------------------------- what the API says

class Api:
    def __init__(self, client):
        self.c = client
        spec = client.get("/openapi.json").json or {}
        self.paths = spec.get("paths", {})

    def has(self, path):
        return "get" in self.paths.get(path, {})

    def params(self, path):
        get = self.paths.get(path, {}).get("get", {})
        return [p.get("name") for p in get.get("parameters", [])]

    def get(self, path):
        r = self.c.get(path)
        if r.status != 200:
            raise AssertionError("GET %s: %r" % (path, r))
        return r.json

    def metrics(self):
        samples, _, _ = parse_prometheus(self.c.get("/metrics").body.decode())
        return samples


def list_of(body):
    if isinstance(body, list):
        return body
    for k in ("items", "patterns", "data", "results", "trends", "agents", "cooccurring", "rows"):
        if isinstance(body, dict) and isinstance(body.get(k), list):
            return body[k]
    raise AssertionError("not a list: %r" % (body,))


WEEK = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def heat_rows(body):
    """A heatmap answer ({matrix: 7 x 24 in day_names order, day_names}) as {day: [24 counts]}."""
    names = body.get("day_names") or WEEK
    return {names[i]: list(row) for i, row in enumerate(body["matrix"])}


def page_heat(d):
    rows = {}
    for day, hour, n in d["heat"]:
        rows.setdefault(day, [0] * 24)[hour] = n
    return rows


def pct_text(item, sign):
    return "%s%.1f %%" % (sign, abs(float(item["trend_percentage"])))


# ---------------------------------------------------------------- phases

def phase_static(ctx):
    c = ctx.client
    r = c.get("/dashboard")
    R.check("GET /dashboard redirects to /dashboard/", r.status == 301
            and r.headers.get("location") == "/dashboard/", r)
    r = c.get("/dashboard/")
    R.check("GET /dashboard/: 200 HTML, no-cache, ETag", r.status == 200
            and r.ctype.startswith("text/html") and r.headers.get("cache-control") == "no-cache"
            and r.headers.get("etag"), r)
    html = r.body.decode("utf-8")
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    local = [x.split("?")[0] for x in refs if not x.startswith("../") and not x.startswith("#")]
    R.check("index.html refers to no external URL",
            not [x for x in refs if re.match(r"^(?:[a-z]+:)?//", x)], refs)
    for asset in sorted(set(local)):
        r = c.get("/dashboard/" + asset)
        R.check("asset %s: 200, cached for a day" % asset, r.status == 200 and r.body
                and r.headers.get("cache-control") == "public, max-age=86400", r)
    R.check("index.html loads the vendored Chart.js and app.js",
            any(re.match(r"vendor/chart-[0-9.]+\.umd\.min\.js$", x) for x in local)
            and "app.js" in local and "style.css" in local, local)
    lic = [x for x in os.listdir(os.path.join(ROOT, "web", "vendor")) if "LICENSE" in x]
    R.check("the vendored library has its licence", bool(lic)
            and all(c.get("/dashboard/vendor/" + x).status == 200 for x in lic), lic)
    with open(os.path.join(ROOT, "web", "app.js"), encoding="utf-8") as f:
        app = f.read()
    with open(os.path.join(ROOT, "web", "style.css"), encoding="utf-8") as f:
        css = f.read()
    R.check("app.js never inserts HTML (innerHTML, outerHTML, insertAdjacentHTML, "
            "document.write, eval)",
            not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|"
                          r"new Function", app))
    R.check("app.js and style.css name no external URL",
            not re.search(r"https?://|[\"'(]//[a-z]", app + css))


def phase_page(ctx):
    """The seeded page at 1280 x 2000: every figure equals the API's."""
    b, page, api = ctx.browser, ctx.page, ctx.api
    page.navigate(ctx.url("/dashboard/?refresh=1"))
    if not R.check("page ready (first refresh done) within 20 s", page.wait_for(READY, 20),
                   snap_or_error(page)):
        return
    wait_refresh(page, page.eval("Number(document.body.getAttribute('data-refresh-count'))"))
    d = snap(page)
    summary = api.get("/api/patterns/usage/summary")
    top20 = api.get(top_query(api, 20))
    top100 = api.get(top_query(api, 100))
    truth = ctx.seed.summary()
    R.eq("API summary agrees with what was sent",
         {k: summary.get(k) for k in truth}, truth)
    for k in ("total_patterns", "used_patterns", "unused_patterns", "usage_rate", "total_agents",
              "total_usage", "avg_usage_per_pattern"):
        R.eq("summary %s on the page" % k, page_num(d["summary"].get(k)), summary[k])
    R.eq("summary panel state", d["panels"]["summary"]["state"], "ok")
    R.eq("most used: pattern IDs in order", [x["id"] for x in d["top"]],
         [x["pattern_id"] for x in top20])
    R.eq("most used: names", [x["name"] for x in d["top"]], [x["pattern_name"] for x in top20])
    R.eq("most used: counts", [page_num(x["count"]) for x in d["top"]],
         [top_count(x) for x in top20])
    R.check("most used: the chart holds the same names and counts", d["chart"] is not None
            and d["chart"]["labels"] == [x["pattern_name"] for x in top20]
            and d["chart"]["data"] == [top_count(x) for x in top20], d["chart"])
    R.check("most used: labelled all-time (no 30-day ranking in this API)",
            "all time" in d["panels"]["top"]["text"].lower()
            or any(p in api.params("/api/patterns/usage/top") for p in ("days", "window_days")),
            d["panels"]["top"]["text"][:200])

    unused = api.get("/api/patterns/usage/unused?min_age_days=30")
    R.eq("unused: IDs in order", [x["id"] for x in d["unused"]], [x["pattern_id"] for x in unused])
    R.eq("unused: the expected ones", sorted(x["pattern_id"] for x in unused), ["u-mid", "u-old"])
    R.check("unused: age in days shown", all("(%d days old)" % u["age_days"] in p["text"]
                                             for u, p in zip(unused, d["unused"])), d["unused"])
    R.check("unused: alert headline with the count", d["unusedHeadline"] is not None
            and d["unusedHeadline"].startswith("⚠ %d unused patterns" % len(unused)),
            d["unusedHeadline"])
    stale = api.get("/api/patterns/usage/stale?days_inactive=90")
    R.eq("stale: IDs in order", [x["id"] for x in d["stale"]], [x["pattern_id"] for x in stale])
    R.check("stale: days since last use shown", stale and all(
        "%d days ago" % s["days_since_last_use"] in p["text"] for s, p in zip(stale, d["stale"])),
        d["stale"])

    dead = metric(api.metrics(), "patterntrack_dead_letters_total")
    summary = api.get("/api/dead-letters/summary")
    R.eq("dead letters on the page = /api/dead-letters/summary's total", page_num(d["dead"]),
         summary["total"])
    R.eq("dead letters: the two sent, kept and counted by this engine",
         (summary["total"], int(dead)), (len(ctx.seed.dead), len(ctx.seed.dead)))
    want_rows = sorted((x["reason"], x["topic"], x["count"]) for x in summary["by_topic_reason"])
    R.eq("dead-letter panel: one row per reason and topic, with its count",
         sorted((r[0], r[1], page_num(r[2])) for r in d["deadRows"]), want_rows)
    # this engine has no dedupe option: the panel says so (/health's ingest.dedupe is empty)
    R.eq("dead-letter panel: event-ID deduplication is off", d["dups"],
         "Event-ID deduplication is off.")

    check_trends(ctx, d, top100)
    check_heatmap(ctx, d, page)
    first = top20[0]["pattern_id"]
    R.eq("chosen pattern defaults to the most used", d["chosen"], first)
    one = api.get("/api/patterns/usage/" + q(first))
    R.eq("pattern panel: usage count", page_num(d["pattern"].get("usage_count")),
         one["usage_count"])
    check_cooccurring(ctx, d, first)
    check_agents(ctx, d, top100)

    for name, p in sorted(d["panels"].items()):
        if p["state"] == "unavailable":
            continue
        path = p["link"].split(str(ctx.port), 1)[1]
        r = ctx.client.get(path)
        R.check("panel %s links to an endpoint that answers: %s" % (name, path),
                r.status == 200 and (r.is_json() or path.startswith("/metrics")), r)
    no_blank_panel("seeded page", d)
    R.eq("XSS: no script ran, no element injected (typeof __xss, <img>, <script>)", d["xss"],
         ["undefined", 0, 2])
    R.check("XSS: the ID and name are shown as text", XSS_ID in d["panels"]["top"]["text"]
            and XSS_NAME in d["panels"]["top"]["text"], d["panels"]["top"]["text"][:500])
    R.check("status line says it refreshes every 1 s", "every 1 s" in (d["status"] or ""),
            d["status"])
    R.check("engine badge: ok", (d["engine"] or "").startswith("Engine ok"), d["engine"])
    R.check("no banner", d["banner"]["hidden"], d["banner"])
    R.check("no JavaScript error, console error or failed load", not page_problems(b, page),
            page_problems(b, page))
    foreign = [u for u in requests_of(b, page)
               if not u.startswith("http://127.0.0.1:%d/" % ctx.port) and not u.startswith("data:")
               and u != "about:blank"]
    R.check("every request goes to the engine (no external URL)", not foreign, foreign[:10])
    path = os.path.join(ctx.out, "dashboard-1280.png")
    page.screenshot(path)
    with open(os.path.join(ctx.out, "dashboard-1280.html"), "w", encoding="utf-8") as f:
        f.write(page.html())
    ctx.shots.append(path)


def check_trends(ctx, d, top100):
    api = ctx.api
    T = "/api/patterns/usage/trends"
    if api.has(T):
        if "direction" in api.params(T):
            body = api.get(T + "?direction=increasing&limit=10")
            inc = list_of(body)
            dec = list_of(api.get(T + "?direction=decreasing&limit=10"))
            o = body.get("overall") if isinstance(body, dict) else None
            if o:
                diff = o["recent_usage"] - o["previous_usage"]
                sign = {"increasing": "▲ +", "decreasing": "▼ −"}.get(
                    o["trend"], "▶ " + ("+" if diff > 0 else "−" if diff < 0 else ""))
                R.check("trends: the overall trend is shown",
                        (d["trendsOverall"] or "").startswith("All patterns: %s%.1f %%"
                                                              % (sign, o["trend_percentage"]))
                        and "· %d vs %d uses" % (o["recent_usage"], o["previous_usage"])
                        in d["trendsOverall"], (d["trendsOverall"], o))
        else:
            allt = list_of(api.get(T))
            inc = [x for x in allt if x.get("trend") == "increasing"]
            dec = [x for x in allt if x.get("trend") == "decreasing"]
        what = "trends (GET %s)" % T
    else:
        inc = [x for x in top100 if x["trend"] == "increasing"]
        dec = [x for x in top100 if x["trend"] == "decreasing"]
        what = "trends (from /top?limit=100: no /trends route)"
        R.check(what + ": the fallback is said", "no /api/patterns/usage/trends" in
                (d["trendsNote"] or ""), d["trendsNote"])

    if not api.has(T):  # the page orders the fallback by percentage; the route orders itself
        def order(xs):
            return sorted(xs, key=lambda x: -abs(float(x["trend_percentage"])))
        inc, dec = order(inc), order(dec)
    inc, dec = inc[:10], dec[:10]
    R.check(what + ": the seed has rising and falling patterns", inc and dec, (inc, dec))
    R.eq(what + ": rising IDs", [x["id"] for x in d["rising"]], [x["pattern_id"] for x in inc])
    R.eq(what + ": falling IDs", [x["id"] for x in d["falling"]], [x["pattern_id"] for x in dec])
    R.check(what + ": arrows and percentages", all(
        p["text"].startswith("▲ " + pct_text(x, "+")) for x, p in zip(inc, d["rising"])) and all(
        p["text"].startswith("▼ " + pct_text(x, "−")) for x, p in zip(dec, d["falling"])),
        (d["rising"][:3], d["falling"][:3]))
    if api.has(T):
        R.check(what + ": recent vs previous counts", all(
            p["text"].endswith("%d vs %d" % (x["recent_usage"], x["previous_usage"]))
            for x, p in zip(inc + dec, d["rising"] + d["falling"])), (d["rising"][:2], inc[:2]))


def check_heatmap(ctx, d, page):
    H = "/api/patterns/usage/heatmap"
    if not ctx.api.has(H):
        R.check("heatmap: not served by this engine, and the panel says so",
                d["panels"]["heatmap"]["state"] == "unavailable"
                and "Not available" in (d["panels"]["heatmap"]["msg"] or ""),
                d["panels"]["heatmap"])
        return
    body = ctx.api.get(H)
    R.eq("heatmap: every cell equals the API's (weekday x hour)", page_heat(d), heat_rows(body))
    R.check("heatmap: the seed's usage is there", body["total"] > 0, body.get("total"))
    R.eq("heatmap: 7 rows Monday first", [x[0] for x in d["heat"][::24]], WEEK)
    R.check("heatmap: time zone and period said", "UTC" in (d["heatTz"] or "")
            and "last %d days" % body["days"] in d["heatTz"], d["heatTz"])
    PH = "/api/patterns/usage/{pattern_id}/heatmap"
    if ctx.api.has(PH):
        pid = d["chosen"]
        page.eval("(() => { const s = document.querySelector('#panel-heatmap .heat-scope'); "
                  "s.value = 'chosen'; s.dispatchEvent(new Event('change')); })()")
        ok = page.wait_for("(document.querySelector('#panel-heatmap .tz').textContent || '')"
                           ".startsWith(%s)" % json.dumps("of " + pid + ","), 10)
        d2 = snap(page)
        R.check("heatmap of the chosen pattern: shown on request", ok, d2["heatTz"])
        R.eq("heatmap of the chosen pattern: equals the API's", page_heat(d2),
             heat_rows(ctx.api.get("/api/patterns/usage/%s/heatmap" % q(pid))))
        page.eval("(() => { const s = document.querySelector('#panel-heatmap .heat-scope'); "
                  "s.value = 'all'; s.dispatchEvent(new Event('change')); })()")


def check_cooccurring(ctx, d, pid):
    C = "/api/patterns/usage/{pattern_id}/cooccurring"
    if not ctx.api.has(C):
        R.check("co-occurring: not served by this engine, and the panel says so",
                d["panels"]["cooccurring"]["state"] == "unavailable", d["panels"]["cooccurring"])
        return
    items = list_of(ctx.api.get("/api/patterns/usage/%s/cooccurring?limit=10" % q(pid)))
    R.eq("co-occurring: pattern IDs", [x["id"] for x in d["cooc"]],
         [x.get("pattern_id", x.get("other_pattern_id")) for x in items])
    R.eq("co-occurring: counts", [page_num(x["cells"][1]) for x in d["cooc"]],
         [x.get("count", x.get("cooccurrence_count")) for x in items])


def top_query(api, limit):
    """The /top request the page makes: over the last 30 days when /top can rank a window."""
    q = "/api/patterns/usage/top?limit=%d" % limit
    return q + "&days=30" if "days" in api.params("/api/patterns/usage/top") else q


def top_count(item):
    return item.get("usage_in_window", item["usage_count"])


def check_agents(ctx, d, top100):
    api = ctx.api
    if api.has("/api/agents"):
        agents = list_of(api.get("/api/agents"))
        names = [a if isinstance(a, str) else next(a[k] for k in ("agent_name", "name", "agent")
                                                   if k in a) for a in agents]
        R.eq("agents: names, most active first", [x["name"] for x in d["agents"]], names)
        R.eq("agents: uses and distinct patterns",
             [[page_num(c) for c in x["cells"][1:]] for x in d["agents"]],
             [[a["usage_count"], a["distinct_patterns"]] for a in agents])
        R.eq("agents: the seed's agents", sorted(names), sorted(set(AGENTS) | {"agent-old"}))
    else:
        names = sorted({a for x in top100 for a in x["used_by_agents"]})
        R.eq("agents (fallback from /top): names", [x["name"] for x in d["agents"]], names)
    shown = d["agentShown"]
    if api.has("/api/agents/{agent_name}/profile"):
        prof = api.get("/api/agents/%s/profile" % q(shown))
        rows = prof if isinstance(prof, list) else next(
            (prof[k] for k in ("pattern_types", "by_pattern_type", "types", "profile",
                               "preferences", "items") if k in prof), [])
        if isinstance(rows, dict):
            rows = [dict(v, pattern_type=k) if isinstance(v, dict) else
                    {"pattern_type": k, "usage_count": v} for k, v in rows.items()]
        want = {r.get("pattern_type", r.get("type")):
                r.get("usage_count", r.get("uses", r.get("count"))) for r in rows}
    else:
        want = {}
        for x in api.get("/api/patterns/usage/by-agent/%s?limit=200" % q(shown)):
            want[x["pattern_type"]] = want.get(x["pattern_type"], 0) + x["agent_usage_count"]
    R.eq("agent profile of %r: uses per pattern type" % shown,
         {t: page_num(n) for t, n in d["profile"]}, want)


def snap_or_error(page):
    try:
        return json.dumps(snap(page))[:1500]
    except cdp.CDPError as e:
        return str(e)


def phase_search(ctx):
    page, api = ctx.page, ctx.api

    def search(text):
        page.eval("(() => { const i = document.getElementById('q'); i.value = %s; "
                  "document.getElementById('search').requestSubmit(); })()" % json.dumps(text))

    def settled(pid, state):
        """The pattern panel shows pid's answer: its data (ok) or a message naming it."""
        return page.wait_for(
            "(() => { const p = document.getElementById('panel-pattern'); "
            "const f = p.querySelector('[data-field=pattern_id]'); "
            "return p.querySelector('.chosen').textContent === %s && "
            "p.getAttribute('data-state') === %s && (%s === 'ok' ? f && f.textContent === %s "
            ": p.querySelector('.msg').textContent.indexOf('“' + %s + '”') >= 0); })()"
            % (json.dumps(pid), json.dumps(state), json.dumps(state), json.dumps(pid),
               json.dumps(pid)), 10)
    search("p-03")
    ok = settled("p-03", "ok")
    d = snap(page)
    R.check("search p-03: the pattern panel shows it", ok, d["panels"]["pattern"])
    R.eq("search p-03: its usage count", page_num(d["pattern"].get("usage_count")),
         api.get("/api/patterns/usage/p-03")["usage_count"])
    R.check("search p-03: the URL keeps the choice", "pattern=p-03" in d["url"], d["url"])
    search(XSS_ID)
    ok = settled(XSS_ID, "ok")
    d = snap(page)
    R.check("search an ID holding HTML: shown as text", ok
            and d["pattern"].get("pattern_id") == XSS_ID
            and d["xss"] == ["undefined", 0, 2], (d["pattern"], d["xss"]))
    search("p-1")
    ok = settled("p-1", "empty")
    d = snap(page)
    top100 = api.get(top_query(api, 100))
    want = [x["pattern_id"] for x in top100 if "p-1" in x["pattern_id"].lower()
            or "p-1" in x["pattern_name"].lower()][:10]
    R.check("search an unknown ID: says so", ok and "No pattern has the ID “p-1”"
            in (d["panels"]["pattern"]["msg"] or ""), d["panels"]["pattern"])
    R.eq("search an unknown ID: offers the most used patterns that contain it", d["matches"], want)
    page.eval("document.querySelector('#panel-pattern .matches button').click()")
    R.check("clicking an offered pattern chooses it", settled(want[0], "ok"), snap_or_error(page))
    page.eval("document.querySelector('#panel-top tbody tr:nth-child(2) button').click()")
    second = api.get("/api/patterns/usage/top?limit=2")[1]["pattern_id"]
    R.check("clicking a pattern in Most used chooses it", settled(second, "ok"),
            snap_or_error(page))


def phase_live(ctx):
    """New events reach the open page by its own refresh, without a reload."""
    page, api = ctx.page, ctx.api
    page.eval("window.__ptMarker = 4242")
    before = snap(page)
    t = now() - dt.timedelta(minutes=5)
    body = [{"agent_name": "agent-live", "patterns": ["p-23", "live-new"], "timestamp": iso(t)}
            for _ in range(3)]
    r = ctx.client.call("POST", "/api/patterns/usage/events?topic=agent-actions", body=body)
    R.check("POST 3 more events", r.status == 200 and r.json.get("accepted") == 3, r)
    want = api.get("/api/patterns/usage/summary")
    R.eq("the API counts them", want["total_usage"] - page_num(before["summary"]["total_usage"]), 6)
    got = page.wait_for("(() => { const e = document.querySelector('#panel-summary "
                        "[data-field=total_usage]'); return e && e.textContent.replace(/\\D/g, '') "
                        "=== %s; })()" % json.dumps(str(want["total_usage"])), 15)
    wait_refresh(page, before["refreshCount"])
    d = snap(page)
    R.check("the page shows the new total by itself", got, d["summary"])
    R.eq("the page shows every new summary figure",
         {k: page_num(d["summary"][k]) for k in ("total_patterns", "total_agents", "total_usage")},
         {k: want[k] for k in ("total_patterns", "total_agents", "total_usage")})
    R.eq("no reload happened (marker kept)", page.eval("window.__ptMarker"), 4242)
    R.check("it refreshed more than once", d["refreshCount"] > before["refreshCount"],
            (before["refreshCount"], d["refreshCount"]))


def phase_narrow(ctx):
    page = ctx.page
    page.viewport(400, 900)
    time.sleep(0.3)
    wait_refresh(page, page.eval("Number(document.body.getAttribute('data-refresh-count'))"))
    time.sleep(0.3)
    dims = page.eval("[document.documentElement.scrollWidth, window.innerWidth]")
    over = page.eval("Array.from(document.querySelectorAll('body *')).filter(e => { "
                     "const r = e.getBoundingClientRect(); return r.width > 0 && r.right > "
                     "window.innerWidth + 1 && !e.closest('.table-box, .heatmap-box, "
                     ".agent-list-box'); }).slice(0, 10).map(e => e.tagName + '.' + e.className "
                     "+ ' ' + Math.round(e.getBoundingClientRect().right))")
    R.check("400 px wide: no horizontal overflow", dims[0] <= dims[1] and not over, (dims, over))
    d = snap(page)
    no_blank_panel("400 px", d)
    R.check("400 px: the chart is drawn", d["chart"] is not None and
            page.eval("document.querySelector('#panel-top canvas').getBoundingClientRect().width")
            <= 400, d["chart"])
    path = os.path.join(ctx.out, "dashboard-400.png")
    page.screenshot(path, full_height=12000)
    ctx.shots.append(path)
    page.viewport(1280, 2000)


def phase_errors(ctx):
    """API failures injected into the page's requests: each panel says what happened."""
    b = ctx.browser
    page = b.new_page(1280, 2000)
    mode = {"down": False}

    def answer(url):
        path = url.split(str(ctx.port), 1)[1]
        if mode["down"]:
            return ("fail", "ConnectionRefused")
        if path.startswith("/api/patterns/usage/summary"):
            return (500, "application/json",
                    b'{"detail":"Internal Server Error","error_id":"e-7f3a"}')
        if path.startswith("/api/patterns/usage/stale"):
            return (422, "application/json", json.dumps({"detail": [{
                "loc": ["query", "days_inactive"], "msg": "must be at most 365",
                "type": "value_error"}]}).encode())
        if path.startswith("/api/patterns/usage/unused"):
            return (200, "application/json", b"<html>proxy error page</html>")
        if path.startswith("/api/patterns/usage/trends"):
            return (200, "application/json", b'{"patterns": "not a list"}')
        if path.startswith("/metrics") or path.startswith("/api/dead-letters"):
            return ("fail", "ConnectionRefused")
        return None
    page.intercept(["*/api/*", "*/metrics*", "*/health*", "*/openapi.json*"], answer)
    page.navigate(ctx.url("/dashboard/?refresh=0"))
    R.check("error page ready", page.wait_for(READY, 20), snap_or_error(page))
    d = snap(page)
    P = d["panels"]
    R.check("HTTP 500: the summary panel says API error, with the error id",
            P["summary"]["state"] == "error" and "HTTP 500" in (P["summary"]["msg"] or "")
            and "e-7f3a" in P["summary"]["msg"], P["summary"])
    R.check("HTTP 422: the stale panel says the API rejected it, and why",
            P["stale"]["state"] == "error" and "HTTP 422" in (P["stale"]["msg"] or "")
            and "must be at most 365" in P["stale"]["msg"], P["stale"])
    R.check("not JSON: the unused panel says so", P["unused"]["state"] == "error"
            and "not JSON" in (P["unused"]["msg"] or ""), P["unused"])
    R.check("JSON of the wrong shape: the trends panel says so", P["trends"]["state"] == "error"
            and "Unexpected answer" in (P["trends"]["msg"] or ""), P["trends"])
    R.check("connection refused: the dead-letter panel says the engine cannot be reached",
            P["deadletters"]["state"] == "network"
            and "Cannot reach" in (P["deadletters"]["msg"] or ""), P["deadletters"])
    R.check("the other panels are unaffected", all(P[k]["state"] == "ok" for k in (
        "top", "pattern", "agents")), {k: P[k]["state"] for k in P})
    R.check("auto-refresh off: said in the status line", "auto-refresh off" in (d["status"] or ""),
            d["status"])
    R.check("one failing panel raises no page-wide banner", d["banner"]["hidden"], d["banner"])
    no_blank_panel("API errors", d)
    R.eq("API errors: no element injected", d["xss"], ["undefined", 0, 2])
    R.check("API errors: no JavaScript exception", not page_problems(b, page, True),
            page_problems(b, page, True))
    path = os.path.join(ctx.out, "dashboard-errors.png")
    page.screenshot(path)
    ctx.shots.append(path)
    # The engine gone: every request refused, then the Refresh button.
    mode["down"] = True
    n = d["refreshCount"]
    page.eval("document.getElementById('refresh-now').click()")
    wait_refresh(page, n)
    d = snap(page)
    R.check("engine unreachable: the banner says so", not d["banner"]["hidden"]
            and d["banner"]["kind"] == "unreachable"
            and "cannot be reached" in (d["banner"]["text"] or ""), d["banner"])
    bad = {k: p["msg"] for k, p in d["panels"].items()
           if p["state"] != "network" or "Cannot reach" not in (p["msg"] or "")}
    R.check("engine unreachable: every panel says it cannot reach the engine", not bad, bad)
    R.check("engine unreachable: engine badge", d["engine"] == "Engine unreachable", d["engine"])
    page.close()


OPTIONAL = ["/api/patterns/usage/trends", "/api/patterns/usage/heatmap",
            "/api/patterns/usage/{pattern_id}/heatmap",
            "/api/patterns/usage/{pattern_id}/cooccurring", "/api/agents",
            "/api/agents/{agent_name}/profile"]


def phase_old_engine(ctx):
    """An engine with the seed's API only (its /openapi.json without the history and agent
    routes): trends and agents fall back to /top and /by-agent and say so; heatmap and
    co-occurrence say they are not available."""
    b, api = ctx.browser, ctx.api
    page = b.new_page(1280, 2000)
    spec = ctx.client.get("/openapi.json").json
    for path in OPTIONAL:
        spec["paths"].pop(path, None)
    asked = []

    def answer(url):
        path = url.split(str(ctx.port), 1)[1]
        asked.append(path)
        if path.startswith("/openapi.json"):
            return (200, "application/json", json.dumps(spec).encode())
        return None
    page.intercept(["*/openapi.json*", "*/api/*"], answer)
    page.navigate(ctx.url("/dashboard/?refresh=0"))
    R.check("seed-API-only page ready", page.wait_for(READY, 20), snap_or_error(page))
    d = snap(page)
    P = d["panels"]
    top100 = api.get(top_query(api, 100))
    saved = ctx.api.paths
    ctx.api.paths = spec["paths"]
    try:
        check_trends(ctx, d, top100)
        check_heatmap(ctx, d, page)
        check_cooccurring(ctx, d, d["chosen"])
        check_agents(ctx, d, top100)
    finally:
        ctx.api.paths = saved
    R.check("seed API only: the co-occurrence panel says not available",
            "Not available" in (P["cooccurring"]["msg"] or ""), P["cooccurring"])
    R.check("seed API only: agents fall back to /top and say so",
            "no /api/agents" in P["agents"]["text"], P["agents"]["text"][:300])
    R.check("seed API only: the page never asks for a route the engine lacks",
            not [x for x in asked if re.match(r"/api/(patterns/usage/(trends|heatmap|[^/?]+/"
                                              r"(heatmap|cooccurring))|agents)", x)], asked)
    no_blank_panel("seed API only", d)
    R.check("seed API only: no JavaScript error, console error or failed load",
            not page_problems(b, page), page_problems(b, page))
    path = os.path.join(ctx.out, "dashboard-seed-api-only.png")
    page.screenshot(path)
    ctx.shots.append(path)
    page.close()


def phase_empty(ctx):
    b = ctx.browser
    page = b.new_page(1280, 2000)
    page.navigate("http://127.0.0.1:%d/dashboard/" % ctx.empty_port)
    R.check("empty database: page ready", page.wait_for(READY, 20), snap_or_error(page))
    d = snap(page)
    P = d["panels"]
    R.check("empty database: the summary says the database is empty",
            P["summary"]["state"] == "empty" and "database is empty" in (P["summary"]["msg"] or ""),
            P["summary"])
    R.eq("empty database: summary figures are zero",
         {k: page_num(v) for k, v in d["summary"].items()},
         {"total_patterns": 0, "used_patterns": 0, "unused_patterns": 0, "usage_rate": 0.0,
          "total_agents": 0, "total_usage": 0, "avg_usage_per_pattern": 0.0})
    for name, text in (("top", "No usage counted yet"), ("unused", "No unused patterns"),
                       ("stale", "No stale patterns"), ("trends", "no trend"),
                       ("pattern", "No pattern to show yet"), ("agents", "No agent")):
        R.check("empty database: %s panel says %r" % (name, text),
                P[name]["state"] == "empty" and text in (P[name]["msg"] or ""), P[name])
    R.check("empty database: heatmap empty or not available",
            P["heatmap"]["state"] in ("empty", "unavailable"), P["heatmap"])
    R.check("empty database: co-occurrence empty or not available",
            P["cooccurring"]["state"] in ("empty", "unavailable"), P["cooccurring"])
    R.eq("empty database: no dead letters", page_num(d["dead"]), 0)
    R.check("default refresh: every 10 s", "every 10 s" in (d["status"] or ""), d["status"])
    no_blank_panel("empty database", d)
    R.check("empty database: no JavaScript error, console error or failed load",
            not page_problems(b, page), page_problems(b, page))
    path = os.path.join(ctx.out, "dashboard-empty.png")
    page.screenshot(path)
    ctx.shots.append(path)
    page.close()


def phase_token(ctx):
    """The empty database's engine, reloaded to guard reads with a bearer token."""
    token = "dashboard-token-0123456789abcdef"
    with open(ctx.empty_server.config, "w") as f:
        f.write(CONFIG.replace("return {", "return { http_token = %s, http_token_reads = true,"
                               % json.dumps(token)))
    c = Client(ctx.empty_port)
    # The engine watches its config file and may apply the token before this request arrives;
    # carrying the token makes the reload pass either way (without one in force it is ignored).
    r = c.call("POST", "/admin/reload", headers={"Authorization": "Bearer " + token})
    R.check("token reload: 200", r.status == 200, r)
    R.eq("token reload: reads need it now", c.get("/api/patterns/usage/summary").status, 401)
    R.eq("token reload: the dashboard files stay open", c.get("/dashboard/app.js").status, 200)
    b = ctx.browser
    page = b.new_page(1280, 2000)
    page.navigate("http://127.0.0.1:%d/dashboard/?refresh=0#token=%s" % (ctx.empty_port, token))
    R.check("#token=: page ready", page.wait_for(READY, 20), snap_or_error(page))
    d = snap(page)
    R.check("#token=: the summary panel shows the (empty) database",
            d["panels"]["summary"]["state"] == "empty", d["panels"]["summary"])
    R.check("#token=: no panel in error", not [k for k, p in d["panels"].items()
                                                if p["state"] in ("error", "network")],
            {k: p["state"] for k, p in d["panels"].items()})
    R.check("#token=: the token is gone from the address bar",
            token not in page.eval("location.href"), page.eval("location.href"))
    R.check("#token=: no JavaScript error, console error or failed load",
            not page_problems(b, page), page_problems(b, page))
    page.close()
    page = b.new_page(1280, 2000)  # a new tab: its sessionStorage holds no token
    page.navigate("http://127.0.0.1:%d/dashboard/?refresh=0" % ctx.empty_port)
    R.check("no token: page ready", page.wait_for(READY, 20), snap_or_error(page))
    d = snap(page)
    P = d["panels"]
    R.check("no token: the summary panel says a bearer token is needed",
            P["summary"]["state"] == "error" and "bearer token" in (P["summary"]["msg"] or "")
            and "#token=" in (P["summary"]["msg"] or ""), P["summary"])
    R.check("no token: no JavaScript error (the 401s are expected)",
            not page_problems(b, page, allow_http_errors=True),
            page_problems(b, page, allow_http_errors=True))
    page.close()


def phase_pg_down(ctx, state):
    page = ctx.page
    rc, err = services("stop", "pg")
    state["pg_stopped"] = True
    if not R.check("scripts/services stop pg", rc == 0, err):
        return
    # Every panel checked below has had its refresh since the stop (each refresh asks all).
    ok = page.wait_for("['summary', 'top', 'unused', 'stale', 'pattern'].every(p => "
                       "document.getElementById('panel-' + p).getAttribute('data-state') "
                       "=== 'db') && document.getElementById('banner').getAttribute('data-kind') "
                       "=== 'db'", 45, 0.25)
    d = snap(page)
    P = d["panels"]
    R.check("PostgreSQL down: the open page says the database is unavailable", ok
            and "Database unavailable" in (P["summary"]["msg"] or "")
            and "Database unavailable" in (d["banner"]["text"] or ""), (P["summary"], d["banner"]))
    for name in ("top", "unused", "stale", "pattern"):
        R.check("PostgreSQL down: panel %s says so" % name, P[name]["state"] == "db"
                and "PostgreSQL" in (P[name]["msg"] or ""), P[name])
    R.check("PostgreSQL down: engine badge", "PostgreSQL unreachable" in (d["engine"] or ""),
            d["engine"])
    no_blank_panel("PostgreSQL down", d)
    path = os.path.join(ctx.out, "dashboard-pg-down.png")
    page.screenshot(path)
    ctx.shots.append(path)
    fresh = ctx.browser.new_page(1280, 2000)
    fresh.navigate(ctx.url("/dashboard/"))
    R.check("PostgreSQL down: a fresh load is ready", fresh.wait_for(READY, 30),
            snap_or_error(fresh))
    d = snap(fresh)
    R.check("PostgreSQL down: a fresh load says the database is unavailable",
            d["panels"]["summary"]["state"] == "db" and d["banner"]["kind"] == "db",
            (d["panels"]["summary"], d["banner"]))
    no_blank_panel("PostgreSQL down, fresh load", d)
    fresh.close()
    rc, err = services("start", "pg")
    if R.check("scripts/services start pg", rc == 0, err):
        state["pg_stopped"] = False
    back = poll(lambda: ctx.client.get("/api/patterns/usage/summary").status == 200, 60, 0.25)
    R.check("PostgreSQL back: the API answers", back, "")
    want = ctx.api.get("/api/patterns/usage/summary")
    ok = page.wait_for("document.getElementById('panel-summary').getAttribute('data-state') === "
                       "'ok' && document.getElementById('banner').hidden", 30, 0.25)
    d = snap(page)
    R.check("PostgreSQL back: the open page recovers by itself", ok, (d["panels"]["summary"],
                                                                      d["banner"]))
    R.eq("PostgreSQL back: the figures equal the API's", page_num(d["summary"]["total_usage"]),
         want["total_usage"])


# ---------------------------------------------------------------- main

class Ctx:
    pass


def main():
    binary = engine_binary()
    base = os.environ.get("DATABASE_URL")
    chromium = cdp.find_chromium()
    if not (R.check("DATABASE_URL is set (eval \"$(scripts/services up)\")", base)
            & R.check("patterntrack binary exists: " + binary, os.access(binary, os.X_OK))
            & R.check("chromium is installed (Debian package chromium)", chromium)):
        print(R.summary())
        return 1
    out = os.environ.get("PT_TEST_OUTPUT") or os.path.join(
        os.path.dirname(os.path.abspath(binary)), "test-output")
    os.makedirs(out, exist_ok=True)
    started = time.monotonic()
    ctx = Ctx()
    ctx.out, ctx.shots, ctx.seed = out, [], Seed()
    ctx.port, ctx.empty_port = free_port(), free_port()
    ctx.url = lambda path: "http://127.0.0.1:%d%s" % (ctx.port, path)
    full = Server(binary, fresh_db(base, DB_FULL), ctx.port, CONFIG)
    empty = Server(binary, fresh_db(base, DB_EMPTY), ctx.empty_port, CONFIG)
    ctx.client = Client(ctx.port)
    ctx.empty_server = empty
    ctx.browser = None
    state = {"pg_stopped": False}
    try:
        ready = True
        for s, port in ((full, ctx.port), (empty, ctx.empty_port)):
            try:
                ready = s.wait_ready(Client(port), 30) and ready
            except RuntimeError as e:
                ready = False
                print(e)
        if not R.check("both engines answer /health within 30 s", ready,
                       full.log_tail() + "\n" + empty.log_tail()):
            return 1
        r = ctx.client.call("POST", "/api/patterns", body=ctx.seed.catalog)
        R.check("seed: register the catalog", r.status == 200, r)
        r = ctx.client.call("POST", "/api/patterns/usage/events?topic=agent-actions",
                            body=ctx.seed.body(), timeout=60)
        R.check("seed: POST the events", r.status == 200 and r.json.get("accepted") ==
                len(ctx.seed.events) + len(ctx.seed.dead)
                and r.json.get("dead_lettered") == len(ctx.seed.dead), r)
        ctx.api = Api(ctx.client)
        print("seeded %d patterns, %d events (%.1f s)" % (len(ctx.seed.catalog),
              len(ctx.seed.events), time.monotonic() - started), flush=True)
        ctx.browser = cdp.Browser(chromium, os.path.join(out, "dashboard-chromium.log"))
        print("browser: %s" % ctx.browser.version().get("product"), flush=True)
        ctx.page = ctx.browser.new_page(1280, 2000)
        R.phase("static files", phase_static, ctx)
        R.phase("seeded page", phase_page, ctx)
        R.phase("search", phase_search, ctx)
        R.phase("live refresh", phase_live, ctx)
        R.phase("400 px", phase_narrow, ctx)
        R.phase("API errors", phase_errors, ctx)
        R.phase("seed API only", phase_old_engine, ctx)
        R.phase("empty database", phase_empty, ctx)
        R.phase("bearer token", phase_token, ctx)
        R.phase("PostgreSQL down", phase_pg_down, ctx, state)
    finally:
        if state["pg_stopped"]:
            rc, err = services("start", "pg")
            R.check("scripts/services start pg (cleanup)", rc == 0, err)
        if ctx.browser is not None:
            ctx.browser.close()
        for s in (full, empty):
            code = s.stop()
            R.eq("SIGTERM: patterntrack exits with 0", code, 0)
            if R.failed:
                print("--- patterntrack log (tail) ---\n" + s.log_tail(20))
            s.cleanup(keep_log=R.failed > 0)
        for path in ctx.shots:
            print("screenshot: " + path)
        print("total %.1f s" % (time.monotonic() - started))
        print(R.summary())
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
