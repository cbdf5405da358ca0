#!/usr/bin/env python3
"""Schemathesis against /openapi.json: generated requests to every documented operation.

    python3 tests/integration/test_schemathesis.py [PATH/TO/patterntrack]

Needs DATABASE_URL (PostgreSQL from `eval "$(scripts/services up)"`); Kafka is not used. The
binary is argv[1], else $PT_BIN, else build/patterntrack. Installs schemathesis first when
missing (`scripts/deps pytools`: tests/requirements.txt into var/venv).

The test creates its own database pt_it_schema, starts the engine on a free loopback port with
KAFKA_ENABLE_CONSUMER=false, registers a few patterns and ingests a few events through the API
(so the path parameters documented with an example name real patterns and agents), then runs
schemathesis with a fixed seed and a bounded number of cases per operation. Checks: no 5xx;
every status code, content type and body is the one /openapi.json declares (so the document
must stay true); the engine is still serving afterwards and exits 0 on SIGTERM. Prints
`N passed, M failed` and exits 1 on any failure.

Settings (environment): PT_SCHEMATHESIS_EXAMPLES (--max-examples: generated cases per operation
in a phase, 50), PT_SCHEMATHESIS_SEED (1).
"""

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_harness import (Client, Results, ROOT, Server, engine_binary, free_port,  # noqa
                         fresh_db, parse_prometheus, q, run_suite)

R = Results()
VENV = os.path.join(ROOT, "var", "venv")
SCHEMATHESIS = os.path.join(VENV, "bin", "schemathesis")
CONFIG_FILE = os.path.join(ROOT, "tests", "integration", "schemathesis.toml")
EXAMPLES = int(os.environ.get("PT_SCHEMATHESIS_EXAMPLES", "50"))
SEED = int(os.environ.get("PT_SCHEMATHESIS_SEED", "1"))
# What /openapi.json promises, checked on every answer.
CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance"]
CONFIG = """-- written by tests/integration/test_schemathesis.py
return {
    topics = {
        ["agent-manifest-injections"] = "rules/agent-manifest-injections.lua",
        ["agent-actions"] = "rules/agent-actions.lua",
        ["agent-routing-decisions"] = "rules/agent-routing-decisions.lua",
    },
    batch_timeout_ms = 100,
    http_max_body_bytes = 65536,
    log_level = "warn",
}
"""


def install():
    """scripts/deps pytools (quick when var/venv is up to date); True when schemathesis runs."""
    start = time.monotonic()
    r = subprocess.run([os.path.join(ROOT, "scripts", "deps"), "pytools"], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    if not R.check("scripts/deps pytools", r.returncode == 0, r.stderr[-2000:]):
        return False
    v = subprocess.run([SCHEMATHESIS, "--version"], capture_output=True, text=True, timeout=60)
    print("%s (%.1f s to check or install)" % (v.stdout.strip(), time.monotonic() - start))
    return R.check("schemathesis --version", v.returncode == 0, v.stderr)


def path_examples(doc):
    """The example of every path parameter of /openapi.json, by parameter name."""
    out = {}
    for item in doc.get("paths", {}).values():
        for op in item.values():
            for p in op.get("parameters", []):
                if p.get("in") == "path" and "example" in p:
                    out.setdefault(p["name"], set()).add(p["example"])
    return out


def seed(c):
    """Patterns and events behind the documented example IDs, plus a few others, so the
    generated requests meet real rows (404 paths and 200 paths both)."""
    doc = c.get("/openapi.json").json or {}
    ex = path_examples(doc)
    patterns = sorted(ex.get("pattern_id", set()) | {"seed-a", "seed-b", "seed-old"})
    agents = sorted(ex.get("agent_name", set()) | {"seed-agent"})
    print("seeding patterns %s, agents %s" % (patterns, agents))
    r = c.call("POST", "/api/patterns", [
        {"pattern_id": p, "pattern_name": "Pattern " + p, "pattern_type": "code",
         "created_at": "2024-01-01T00:00:00Z"} for p in patterns])
    R.check("seed: POST /api/patterns", r.status == 200, r)
    r = c.call("PUT", "/api/patterns/seed-old", {"status": "deprecated"})
    R.check("seed: PUT /api/patterns/seed-old", r.status == 200, r)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    events = []
    for i in range(40):
        t = now - dt.timedelta(hours=7 * i)
        events.append({"agent_name": agents[i % len(agents)],
                       "patterns": [patterns[i % len(patterns)], patterns[(i + 1) % len(patterns)]],
                       "timestamp": t.isoformat().replace("+00:00", "Z")})
    events.append({"agent_name": agents[0], "patterns": ["seed-unregistered"]})
    r = c.call("POST", "/api/patterns/usage/events?topic=agent-actions", events)
    R.check("seed: POST /api/patterns/usage/events", r.status == 200
            and (r.json or {}).get("accepted") == len(events), r)
    for p in patterns:
        r = c.get("/api/patterns/usage/" + q(p))
        R.check("seed: GET /api/patterns/usage/%s is 200" % p, r.status == 200, r)


def phase_found(c):
    """What schemathesis found that changes data, checked here whatever its seed (the rest is in
    test_api.py's phase_found_by_schemathesis)."""
    # created_at with an offset PostgreSQL refuses (beyond 15:59) or a form it reads otherwise
    # (a decimal comma) is stored as the time it names.
    want = {"found-offset": ("0478-10-28T09:58:17-17:26", "0478-10-29T03:24:17Z"),
            "found-comma": ("2024-01-01t00:00:00,5Z", "2024-01-01T00:00:00.5Z")}
    for pid, (sent, _) in sorted(want.items()):
        r = c.call("PUT", "/api/patterns/" + pid, {"created_at": sent})
        R.check("PUT created_at %s: 200" % sent, r.status == 200, r)
    r = c.get("/api/patterns/usage/unused?min_age_days=1")
    got = {x["pattern_id"]: x.get("created_at") for x in (r.json or [])}
    R.eq("created_at stored as the time sent", {pid: got.get(pid) for pid in want},
         {pid: stored for pid, (_, stored) in want.items()})
    # An event time outside years 1..9999 is no time: the event counts at its arrival.
    r = c.call("POST", "/api/patterns/usage/events?topic=agent-actions",
               [{"patterns": ["found-y0"], "timestamp": "0000-01-01T00:00:00+23:59"},
                {"patterns": ["found-y10000"], "timestamp": "9999-12-31T23:59:59-23:59"}])
    R.check("POST events with times in years 0 and 10000: 200", r.status == 200, r)
    now = dt.datetime.now(dt.timezone.utc)
    for pid in ("found-y0", "found-y10000"):
        r = c.get("/api/patterns/usage/" + pid)
        last = (r.json or {}).get("last_used_at")
        R.check("%s counted at its arrival (last_used_at %s)" % (pid, last),
                r.status == 200 and r.json["usage_count"] == 1 and isinstance(last, str)
                and abs(dt.datetime.fromisoformat(last.replace("Z", "+00:00")) - now)
                < dt.timedelta(minutes=5), r)


def run_schemathesis(port):
    report = tempfile.mkdtemp(prefix="pt-it-schema-")
    # One worker: the order of requests (and so the run) depends on the seed alone, and
    # Python 3.11's ast.parse, which hypothesis calls, is not safe in two threads at once.
    cmd = [SCHEMATHESIS, "--config-file", CONFIG_FILE, "run",
           "http://127.0.0.1:%d/openapi.json" % port,
           "--checks", ",".join(CHECKS), "--max-examples", str(EXAMPLES), "--seed", str(SEED),
           "--workers", "1", "--request-timeout", "20", "--no-color",
           "--generation-database", "none", "--report", "junit", "--report-dir", report]
    print("$ " + " ".join(cmd), flush=True)
    start = time.monotonic()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run(cmd, cwd=report, env=env, timeout=600)
    print("schemathesis: exit %d in %.1f s" % (r.returncode, time.monotonic() - start))
    if r.returncode == 0:
        shutil.rmtree(report, ignore_errors=True)
    else:
        print("schemathesis report kept in " + report)
    return r.returncode


def check_metrics(c):
    """The engine's own count of its answers: many, and not one 5xx (schemathesis sees only the
    answers it checks)."""
    r = c.get("/metrics")
    samples, _, errors = parse_prometheus(r.body.decode("utf-8", "replace"))
    R.check("GET /metrics parses", r.status == 200 and not errors, errors[:5])
    answers = [(ls, v) for n, ls, v in samples if n == "patterntrack_http_requests_total"]
    total = sum(v for _, v in answers)
    bad = [(ls, v) for ls, v in answers if ls.get("status", "").startswith("5")]
    print("patterntrack answered %d requests" % total)
    R.check("patterntrack answered over 1000 requests", total > 1000, total)
    R.check("patterntrack answered no 5xx", not bad, bad)


def main():
    def phases(ctx):
        c, server = ctx
        R.phase("seed", seed, c)
        R.phase("found before", phase_found, c)
        rc = run_schemathesis(server.port)
        R.eq("schemathesis: no failure (exit code)", rc, 0)
        R.check("patterntrack still running after schemathesis", server.proc.poll() is None,
                "exit code %s" % server.proc.poll())
        r = c.get("/health", timeout=10)
        R.check("GET /health is 200 after schemathesis", r.status == 200, r)
        check_metrics(c)

    return run_suite(R, "pt_it_schema", CONFIG, lambda c, server, db, binary: (c, server),
                     phases, preflight=install)


if __name__ == "__main__":
    sys.exit(main())
