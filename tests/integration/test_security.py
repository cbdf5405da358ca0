#!/usr/bin/env python3
"""Integration test of the engine's HTTP security posture against real PostgreSQL.

    python3 tests/integration/test_security.py [PATH/TO/patterntrack]

Needs DATABASE_URL (PostgreSQL from `eval "$(scripts/services up)"`); Kafka is not used. The
binary is argv[1], else $PT_BIN, else build/patterntrack. The test creates its own database
pt_it_security and starts the engine on a free loopback port (KAFKA_ENABLE_CONSUMER=false) with
a temporary config: the token in a temporary file (http_token_file), http_max_body_bytes =
65536, http_max_header_bytes = 8192, http_max_connections = 300, http_request_timeout_s = 10.

- bind: the engine listens on loopback only when http_bind is not set;
- bearer token: every route but GET and HEAD (each non-GET operation of /openapi.json, plus
  other methods and unknown paths) answers 401 with `WWW-Authenticate: Bearer` without the
  token or with a wrong one, and writes nothing; with it, 2xx; reads are open; with
  http_token_reads they need it too, except /health and the /dashboard/ files; a new token
  (file changed, then POST /admin/reload; or the file alone, which the engine watches) applies
  to the next request; a token file that fails to load keeps the running token; the dead
  letters (/api/dead-letters...) need it even when reads are open;
- SQL: quotes and SQL in IDs, names and parameters are data;
- limits: headers over http_max_header_bytes, bodies over http_max_body_bytes (by
  Content-Length or chunked);
- slowloris: 200 connections trickle their headers a byte at a time, none ever finishing.
  Meanwhile normal requests are answered as fast as without them (latency printed); a
  connection over http_max_connections is answered 503 (or closed) at once instead of waiting;
  every trickling connection is closed when http_request_timeout_s has passed since it opened,
  although it never fell silent (http_timeout_s is 30 s); then the server serves as before.

Prints `N passed, M failed` and exits 1 on any failure.
"""

import json
import os
import select
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from api_harness import (Client, Results, Server, engine_binary, free_port, fresh_db,  # noqa
                         metric, parse_prometheus, poll, psql, q, run_suite)

R = Results()
MAX_BODY = 65536
MAX_HEADER = 8192
MAX_CONNS = 300
REQUEST_TIMEOUT = 10
SLOW = 200  # slowloris connections
TOKENS = ["first-token-0123456789abcdef", "second-token/0123456789+abc=",
          "third-token_0123456789~ABCDEF"]

CONFIG = """-- written by tests/integration/test_security.py
return {
    batch_timeout_ms = 100,
    http_max_body_bytes = %d,
    http_max_header_bytes = %d,
    http_max_connections = %d,
    http_request_timeout_s = %d,
    http_timeout_s = 30,
    http_token_file = %%s,
    http_token_reads = %%s,
    log_level = "info",
}
""" % (MAX_BODY, MAX_HEADER, MAX_CONNS, REQUEST_TIMEOUT)


def bearer(token):
    return {"Authorization": "Bearer " + token}


class Ctx:
    def __init__(self, client, server, token_file, db):
        self.c = client
        self.server = server
        self.token_file = token_file
        self.db = db
        self.token = TOKENS[0]

    def auth(self):
        return bearer(self.token)

    def write_config(self, reads):
        with open(self.server.config, "w") as f:
            f.write(CONFIG % (json.dumps(self.token_file), "true" if reads else "false"))

    def write_token(self, text, unseen=False):
        # replaced whole (rename), so the engine never reads half a file
        tmp = self.token_file + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        if unseen:
            # The engine's file watch compares mtimes and sizes: a token of the same length with
            # the old mtime goes unnoticed, so only the explicit reload can apply it.
            st = os.stat(self.token_file)
            assert st.st_size == len(text.encode()), "unseen needs a token of the same length"
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, self.token_file)

    def reload(self, token):
        return self.c.call("POST", "/admin/reload", headers=bearer(token))


def is_401(r, invalid):
    """401, JSON detail, and the RFC 6750 challenge (error=invalid_token for a wrong token)."""
    www = r.headers.get("www-authenticate", "")
    return (r.status == 401 and r.is_json() and isinstance(r.json.get("detail"), str)
            and www.startswith("Bearer realm=") and ('error="invalid_token"' in www) == invalid)


def fill(template):
    """A concrete path for an OpenAPI path template: every {param} becomes sec-x."""
    out = []
    for seg in template.split("/"):
        out.append("sec-x" if seg.startswith("{") else seg)
    return "/".join(out)


# ---------------------------------------------------------------- phases

def phase_bind(ctx):
    log = ctx.server.log_tail(200)
    R.check("http_bind not set: the engine listens on 127.0.0.1",
            ("listening on 127.0.0.1:%d" % ctx.c.port) in log, log)
    # An address of this host that is not loopback, if it has one: nothing listens there.
    addr = None
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by a UDP connect
        addr = u.getsockname()[0]
        u.close()
    except OSError:
        pass
    if addr and not addr.startswith("127."):
        try:
            s = socket.create_connection((addr, ctx.c.port), timeout=3)
            s.close()
            reached = True
        except OSError:
            reached = False
        R.check("not reachable on %s (a non-loopback address of this host)" % addr, not reached)
    else:
        print("bind: this host has no non-loopback IPv4 address; that check is skipped")


def write_routes(ctx):
    """(method, path, body) of every write the engine serves: each non-GET operation of
    /openapi.json (read with the token, whatever guards reads), and the ones the README names."""
    spec = ctx.c.get("/openapi.json", headers=ctx.auth()).json or {}
    ops = set()
    for template, item in spec.get("paths", {}).items():
        for method in item:
            if method not in ("get", "head", "parameters"):
                ops.add((method.upper(), template))
    named = {("POST", "/api/patterns/usage/events"), ("PUT", "/api/patterns/{pattern_id}"),
             ("POST", "/api/patterns"), ("POST", "/admin/reload")}
    R.check("/openapi.json lists every write the README names", named <= ops,
            sorted(named - ops))
    return sorted(ops | named)


def phase_token_writes(ctx):
    c = ctx.c
    ops = write_routes(ctx)
    bodies = {"/api/patterns/usage/events": (
        [{"agent_name": "intruder", "patterns": ["sec-unauth"]}]),
        "/api/patterns/{pattern_id}": {"pattern_name": "written without the token"},
        "/api/patterns": [{"pattern_id": "sec-unauth-bulk"}]}
    wrong = [("no Authorization", {}, False),
             ("a wrong token", bearer("wrong-token-0123456789abcdef"), True),
             ("the token with one more byte", bearer(ctx.token + "x"), True),
             ("a prefix of the token", bearer(ctx.token[:-1]), True),
             ("the token in another case", bearer(ctx.token.upper()), True),
             ("Basic credentials", {"Authorization": "Basic dXNlcjpwYXNz"}, False),
             ("the token without its scheme", {"Authorization": ctx.token}, False),
             ("the token in a query parameter", {}, False)]
    for method, template in ops:
        path = fill(template)
        if template == "/api/patterns/usage/events":
            path += "?topic=agent-actions"
        body = bodies.get(template)
        for what, hdrs, invalid in wrong:
            p = path + (("&" if "?" in path else "?") + "token=" + ctx.token
                        if "query" in what else "")
            r = c.call(method, p, body=body, headers=hdrs)
            R.check("%s %s with %s: 401 JSON, WWW-Authenticate: Bearer%s"
                    % (method, template, what, ', error="invalid_token"' if invalid else ""),
                    is_401(r, invalid), (r, r.headers))
    # Nothing was written by those requests.
    r = c.get("/api/patterns/usage/sec-x", headers=ctx.auth())
    R.eq("PUT without the token registered nothing", r.status, 404)
    r = c.get("/api/patterns/usage/sec-unauth-bulk", headers=ctx.auth())
    R.eq("POST /api/patterns without the token registered nothing", r.status, 404)
    r = c.get("/api/patterns/usage/sec-unauth", headers=ctx.auth())
    R.eq("POST events without the token counted nothing", r.status, 404)
    n = psql(ctx.db, "SELECT count(*) FROM pattern_lineage_nodes").strip()
    R.eq("the catalog is still empty", n, "0")

    # With the token: the writes work (any case of the scheme, extra spaces).
    r = c.call("PUT", "/api/patterns/sec-a", body={"pattern_name": "A", "pattern_type": "code"},
               headers=ctx.auth())
    R.check("PUT /api/patterns/{id} with the token: 200", r.status == 200, r)
    r = c.call("POST", "/api/patterns", body=[{"pattern_id": "sec-b"}, {"pattern_id": "sec-c"}],
               headers={"Authorization": "bearer   %s " % ctx.token})
    R.check("POST /api/patterns with 'bearer   TOKEN ': 200, 2 registered",
            r.status == 200 and r.json.get("registered") == 2, r)
    r = c.call("POST", "/api/patterns/usage/events?topic=agent-actions",
               body=[{"agent_name": "agent-s", "patterns": ["sec-a", "sec-b"]}],
               headers=ctx.auth(), timeout=15)
    R.check("POST events with the token: 200, 1 accepted",
            r.status == 200 and r.json.get("accepted") == 1, r)
    r = c.get("/api/patterns/usage/sec-a")
    R.check("the event was counted", r.status == 200 and r.json.get("usage_count") == 1, r)
    r = ctx.reload(ctx.token)
    R.check("POST /admin/reload with the token: 200", r.status == 200 and r.json.get("ok"), r)
    # Other methods and unknown paths need the token before anything else is said.
    for method, path, want in (("DELETE", "/api/patterns/sec-a", 405),
                               ("PATCH", "/api/patterns/sec-a", 405),
                               ("OPTIONS", "/api/patterns", 405),
                               ("POST", "/no/such/route", 404),
                               ("POST", "/health", 405)):
        r = c.call(method, path)
        R.check("%s %s without the token: 401" % (method, path), is_401(r, False), r)
        r = c.call(method, path, headers=ctx.auth())
        R.eq("%s %s with the token: %d" % (method, path, want), r.status, want)

    # Reads are open by default.
    for path in ("/api/patterns/usage/summary", "/api/patterns/usage/top", "/metrics",
                 "/openapi.json", "/health", "/dashboard/"):
        r = c.get(path)
        R.check("GET %s without the token (reads not guarded): 200" % path, r.status == 200, r)
    r = c.call("HEAD", "/api/patterns/usage/summary")
    R.eq("HEAD without the token (reads not guarded): 200", r.status, 200)
    # ... but not the dead letters (their payloads may hold user text), however the path is
    # spelled for the router
    for path in ("/api/dead-letters", "/api/dead-letters/summary", "/api//dead-letters/",
                 "/%61pi/dead%2Dletters?limit=1", "/api/dead-letters?topic=agent-actions"):
        for what, hdrs, invalid in wrong[:2]:
            r = c.get(path, headers=hdrs)
            R.check("GET %s with %s (reads not guarded): 401" % (path, what),
                    is_401(r, invalid), (r, r.headers))
        r = c.get(path, headers=ctx.auth())
        R.check("GET %s with the token: 200 JSON" % path, r.status == 200 and r.is_json(), r)


def phase_token_reads(ctx):
    c = ctx.c
    ctx.write_config(reads=True)
    r = ctx.reload(ctx.token)
    R.check("http_token_reads = true, POST /admin/reload: 200", r.status == 200, r)
    for path in ("/api/patterns/usage/summary", "/api/patterns/usage/sec-a",
                 "/api/patterns/usage/top?limit=5", "/metrics", "/openapi.json",
                 "/api/agents", "/no/such/route", "/health/", "/h%65alth"):
        r = c.get(path)
        R.check("reads guarded: GET %s without the token: 401" % path, is_401(r, False), r)
        r = c.get(path, headers=bearer("wrong-token-0123456789abcdef"))
        R.check("reads guarded: GET %s with a wrong token: 401" % path, is_401(r, True), r)
    r = c.call("HEAD", "/api/patterns/usage/summary")
    R.eq("reads guarded: HEAD without the token: 401", r.status, 401)
    for path in ("/api/patterns/usage/summary", "/api/patterns/usage/sec-a", "/metrics",
                 "/openapi.json"):
        r = c.get(path, headers=ctx.auth())
        R.check("reads guarded: GET %s with the token: 200" % path, r.status == 200, r)
    for path in ("/health", "/dashboard/", "/dashboard/app.js"):
        r = c.get(path)
        R.check("reads guarded: GET %s stays open: 200" % path, r.status == 200, r)
    r = c.call("HEAD", "/health")
    R.eq("reads guarded: HEAD /health stays open", r.status, 200)
    # The 401s are counted, under their own route label.
    r = c.get("/metrics", headers=ctx.auth())
    samples, _, errors = parse_prometheus(r.body.decode())
    n = metric(samples, "patterntrack_http_requests_total", route="unauthorized", status="401")
    R.check("metrics: the 401s are counted (route=\"unauthorized\")", n >= 50 and not errors,
            (n, errors[:3]))


def phase_token_rotation(ctx):
    c = ctx.c
    old, new = ctx.token, TOKENS[1]
    ctx.write_token(new + "\n", unseen=True)  # or the watch might apply it before the request
    r = ctx.reload(old)  # the request that reloads is judged by the token it arrived under
    R.check("new token file, POST /admin/reload with the old token: 200", r.status == 200, r)
    ctx.token = new
    r = c.get("/api/patterns/usage/summary", headers=bearer(old))
    R.check("after the reload the old token is refused", is_401(r, True), r)
    r = c.get("/api/patterns/usage/summary", headers=bearer(new))
    R.eq("after the reload the new token is accepted", r.status, 200)
    r = c.call("PUT", "/api/patterns/sec-d", body={}, headers=bearer(new))
    R.eq("after the reload the new token writes", r.status, 200)

    # The engine watches the token file: a change alone applies within the poll (2 s).
    third = TOKENS[2]
    ctx.write_token(third)
    ok = poll(lambda: c.get("/api/patterns/usage/summary", headers=bearer(third)).status == 200,
              15, 0.2)
    R.check("token file changed, no reload asked: the new token works within 15 s", ok)
    if ok:
        ctx.token = third
    r = c.get("/api/patterns/usage/summary", headers=bearer(new))
    R.check("... and the one before is refused", is_401(r, True), r)

    # A token file that does not load: the reload fails and the running token stays.
    bad = "too-short-123"
    ctx.write_token(bad)
    r = ctx.reload(ctx.token)
    R.check("a token file with a bad token: reload answers 409, without the token's text",
            r.status == 409 and r.json.get("ok") is False and bad not in r.body.decode()
            and "http_token_file" in r.json.get("message", ""), r)
    r = c.get("/api/patterns/usage/summary", headers=ctx.auth())
    R.eq("... and the running token still works", r.status, 200)
    r = c.get("/api/patterns/usage/summary", headers=bearer(bad))
    R.check("... and the bad one does not", is_401(r, True), r)
    ctx.write_token(ctx.token)
    r = ctx.reload(ctx.token)
    R.eq("token file repaired: reload 200", r.status, 200)
    log = ctx.server.log_tail(400)
    leaked = [t for t in TOKENS + [bad] if t in log]
    R.check("no token ever appears in the engine's log", not leaked, leaked)


def phase_sql(ctx):
    c, h = ctx.c, ctx.auth()
    evil = "sec-'); DROP TABLE pattern_lineage_nodes; --"
    name = "O'Brien \"quoted\" $1 \\ ; DELETE FROM pattern_agent_usage; --"
    r = c.call("PUT", "/api/patterns/" + q(evil), body={"pattern_name": name,
                                                         "pattern_type": "x' OR '1'='1"},
               headers=h)
    R.check("PUT an ID and a name full of SQL: 200", r.status == 200, r)
    r = c.get("/api/patterns/usage/" + q(evil), headers=h)
    R.check("... read back as data, byte for byte", r.status == 200
            and r.json.get("pattern_id") == evil and r.json.get("pattern_name") == name, r)
    r = c.get("/api/patterns/usage/top?pattern_type=" + q("x' OR '1'='1"), headers=h)
    R.check("top?pattern_type=<SQL>: only the pattern of that literal type", r.status == 200
            and [p["pattern_id"] for p in r.json] == [evil], r)
    r = c.get("/api/patterns/usage/by-agent/" + q("' OR 1=1 --"), headers=h)
    R.check("by-agent/<SQL>: 200, no pattern", r.status == 200 and r.json == [], r)
    n = psql(ctx.db, "SELECT count(*) FROM pattern_lineage_nodes").strip()
    R.check("the catalog table is still there, with every pattern", int(n) >= 5, n)


def raw(port, data, timeout=10):
    """Sends raw bytes; returns (status or None, bytes, seconds) of the answer."""
    start = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    out = b""
    try:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may answer and close before reading it all
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    status = None
    if out.startswith(b"HTTP/1."):
        status = int(out.split(b" ", 2)[1])
    return status, out, time.monotonic() - start


def phase_limits(ctx):
    port, tok = ctx.c.port, ctx.token

    def req(extra_headers=b"", body=b"", method=b"GET", path=b"/health"):
        return (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                + b"Authorization: Bearer " + tok.encode() + b"\r\n" + extra_headers + b"\r\n"
                + body)

    st, out, secs = raw(port, req(b"X-Pad: " + b"a" * (MAX_HEADER - 400) + b"\r\n"))
    R.eq("headers just under http_max_header_bytes: 200", st, 200)
    st, out, secs = raw(port, req(b"X-Pad: " + b"a" * (MAX_HEADER + 100) + b"\r\n"))
    R.check("headers over http_max_header_bytes: 400 (libevent 2.1's answer), connection closed",
            st == 400 and secs < 5, (st, out[:200], secs))
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADER // 8))
    st, out, secs = raw(port, req(many))
    R.check("many small headers over the limit: 400", st == 400, (st, out[:200]))

    events = "/api/patterns/usage/events?topic=agent-actions".encode()
    small = json.dumps([{"agent_name": "a", "patterns": ["sec-limit"]}]).encode()
    pad = b" " * (MAX_BODY - len(small))
    body = small + pad
    st, out, _ = raw(port, req(b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                               % len(body), body, b"POST", events), timeout=20)
    R.eq("a body of exactly http_max_body_bytes: 200", st, 200)
    body += b" "
    st, out, secs = raw(port, req(b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                                  % len(body), body, b"POST", events))
    R.eq("a body one byte over http_max_body_bytes: 413", st, 413)
    st, out, secs = raw(port, req(b"Content-Length: 1000000000\r\n", b"", b"POST", events))
    R.check("Content-Length 1 GB, no body sent: 413 at once", st == 413 and secs < 5,
            (st, secs))
    chunk = b"%x\r\n%s\r\n" % (32768, b"a" * 32768)
    st, out, secs = raw(port, req(b"Transfer-Encoding: chunked\r\n",
                                  chunk * 3 + b"0\r\n\r\n", b"POST", events))
    R.eq("a chunked body over http_max_body_bytes: 413", st, 413)
    # Without the token the body is read (evhttp reads a request whole), then refused.
    st, out, _ = raw(port, b"POST /api/patterns HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Content-Length: 10\r\n\r\n0123456789")
    R.eq("a write without the token, with a body: 401", st, 401)


class Slow:
    """Connections that send a request one byte per tick and never finish it within
    REQUEST_TIMEOUT. Notes, per connection, when it was opened and when the server closed it."""

    def __init__(self, port, n, payload):
        self.payload = payload
        self.socks, self.opened, self.closed, self.pos = [], [], [], []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            self.socks.append(s)
            self.opened.append(time.monotonic())
            self.closed.append(None)
            self.pos.append(0)

    def tick(self):
        """One byte more on every open connection, then notes the ones the server closed."""
        now = time.monotonic()
        for i, s in enumerate(self.socks):
            if self.closed[i] is not None:
                continue
            try:
                s.send(self.payload[self.pos[i]:self.pos[i] + 1])
                self.pos[i] = min(self.pos[i] + 1, len(self.payload) - 1)
            except OSError:
                self.closed[i] = now
        live = [s for i, s in enumerate(self.socks) if self.closed[i] is None]
        if live:
            readable, _, _ = select.select(live, [], [], 0)
            for s in readable:
                i = self.socks.index(s)
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.closed[i] = now

    def open_count(self):
        return sum(1 for x in self.closed if x is None)

    def close(self):
        for s in self.socks:
            s.close()


def timed_get(c, path, headers):
    start = time.monotonic()
    r = c.get(path, headers=headers, timeout=10)
    return r.status, time.monotonic() - start


def phase_slowloris(ctx):
    c, h = ctx.c, ctx.auth()
    paths = ["/health", "/api/patterns/usage/summary", "/api/patterns/usage/sec-a"]

    def sample(n):
        lat, codes = [], []
        for i in range(n):
            st, secs = timed_get(c, paths[i % len(paths)], h)
            codes.append(st)
            lat.append(secs)
        return codes, lat

    codes, base = sample(60)
    R.eq("baseline: 60 requests, all 200", codes, [200] * 60)

    header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 4000
    slow = Slow(c.port, SLOW, header)
    # One more that sends whole headers and then trickles its body.
    body_slow = Slow(c.port, 1, b"POST /api/patterns HTTP/1.1\r\nHost: x\r\nAuthorization: "
                     b"Bearer " + ctx.token.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (MAX_BODY - 1) + b"[" + b" " * 4000)
    body_slow.pos[0] = body_slow.payload.index(b"\r\n\r\n") + 4  # headers at once
    body_slow.socks[0].setblocking(True)
    body_slow.socks[0].sendall(body_slow.payload[:body_slow.pos[0]])
    body_slow.socks[0].setblocking(False)
    stop = threading.Event()
    lock = threading.Lock()
    extra = []

    def gauge():
        """Open connections by the server's count (this request's own included)."""
        r = c.get("/metrics", headers=h, timeout=5)
        samples, _, _ = parse_prometheus(r.body.decode())
        return metric(samples, "patterntrack_http_connections")

    def trickle():
        while not stop.is_set():
            with lock:
                slow.tick()
                body_slow.tick()
                for x in extra:
                    x.tick()
            stop.wait(0.25)
    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        g = gauge()
        R.check("%d trickling connections are open on the server" % (SLOW + 1), g >= SLOW + 1,
                g)
        codes, during = sample(60)
        R.eq("with %d slowloris connections: 60 requests, all 200" % SLOW, codes, [200] * 60)
        p50b, p50d = statistics.median(base), statistics.median(during)
        print("latency without slowloris: median %.1f ms, max %.1f ms; with %d slowloris "
              "connections: median %.1f ms, max %.1f ms"
              % (p50b * 1e3, max(base) * 1e3, SLOW, p50d * 1e3, max(during) * 1e3), flush=True)
        R.check("with slowloris: no request waited over 1 s (max %.1f ms)" % (max(during) * 1e3),
                max(during) < 1.0, during)
        R.check("with slowloris: median latency within 50 ms of the baseline",
                p50d < p50b + 0.05, (p50b, p50d))
        # Fill up to the limit with trickling connections, then one more: answered at once,
        # not queued. (The server accepts in the order of the connects.)
        with lock:
            extra.append(Slow(c.port, MAX_CONNS - SLOW - 1, header))
        st, out, secs = raw(c.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"\r\n", timeout=5)
        R.check("at http_max_connections (%d), one more: 503 or closed at once (%s in %.1f ms)"
                % (MAX_CONNS, st, secs * 1e3), st in (503, None) and secs < 2,
                (st, out[:200], secs))
        print("one connection over http_max_connections: %s after %.1f ms"
              % ("503" if st == 503 else "closed without an answer", secs * 1e3), flush=True)
        if st == 503:
            R.check("the 503 is JSON and says to retry", b"Retry-After: 1" in out
                    and b'"detail"' in out, out)
        # Every trickling connection is closed once REQUEST_TIMEOUT has passed since it opened,
        # although none was ever silent; then the server answers as before.
        deadline = slow.opened[-1] + REQUEST_TIMEOUT + 5
        while time.monotonic() < deadline and (slow.open_count() or body_slow.open_count()):
            time.sleep(0.1)  # the trickle thread notes the closes
        with lock:
            lives = [slow.closed[i] - slow.opened[i] for i in range(SLOW)
                     if slow.closed[i] is not None]
            body_closed = body_slow.closed[0]
        R.eq("all %d slowloris connections closed by the server" % SLOW, len(lives), SLOW)
        if lives:
            print("slowloris connections lived %.2f .. %.2f s (http_request_timeout_s = %d)"
                  % (min(lives), max(lives), REQUEST_TIMEOUT), flush=True)
            R.check("... each after http_request_timeout_s, not before, and within 3 s of it",
                    min(lives) >= REQUEST_TIMEOUT - 0.5 and max(lives) <= REQUEST_TIMEOUT + 3,
                    (min(lives), max(lives)))
        body_life = body_closed and body_closed - body_slow.opened[0]
        R.check("the connection trickling its body was closed too, after the same time",
                body_closed is not None and REQUEST_TIMEOUT - 0.5 <= body_life
                <= REQUEST_TIMEOUT + 3, body_life)
        st, secs = timed_get(c, "/api/patterns/usage/summary", h)
        R.check("after the slowloris connections are closed: 200 at once", st == 200
                and secs < 1, (st, secs))
    finally:
        stop.set()
        t.join()
        slow.close()
        body_slow.close()
        for x in extra:
            x.close()
    ok = poll(lambda: gauge() <= 2, 10, 0.2)
    R.check("the server forgot every closed connection (gauge back to 1)", ok, gauge())
    r = c.get("/metrics", headers=h)
    samples, _, _ = parse_prometheus(r.body.decode())
    timed_out = metric(samples, "patterntrack_http_connections_timed_out_total")
    refused = metric(samples, "patterntrack_http_connections_refused_total")
    R.check("metrics: connections timed out >= %d, refused >= 1" % (SLOW + 1),
            timed_out >= SLOW + 1 and refused >= 1, (timed_out, refused))


def main():
    os.environ.pop("PATTERNTRACK_HTTP_TOKEN", None)  # the file is the token here
    tmp = tempfile.mkdtemp(prefix="pt-it-security-")
    token_file = os.path.join(tmp, "token")
    with open(token_file, "w") as f:
        f.write(TOKENS[0] + "\n")

    def phases(ctx):
        R.phase("bind", phase_bind, ctx)
        R.phase("token on writes", phase_token_writes, ctx)
        R.phase("token on reads", phase_token_reads, ctx)
        R.phase("token rotation", phase_token_rotation, ctx)
        R.phase("sql", phase_sql, ctx)
        R.phase("limits", phase_limits, ctx)
        R.phase("slowloris", phase_slowloris, ctx)

    try:
        return run_suite(R, "pt_it_security", CONFIG % (json.dumps(token_file), "false"),
                         lambda c, server, db, binary: Ctx(c, server, token_file, db), phases)
    finally:
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


if __name__ == "__main__":
    sys.exit(main())
