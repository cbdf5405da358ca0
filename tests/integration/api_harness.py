"""Harness of the HTTP API integration test (tests/integration/test_api.py): results, an HTTP
client, the patterntrack process, psql and scripts/services.

Owns: talking to the server and the services, and counting passes and failures. It knows
nothing of what the answers should be (that is api_truth.py). Python 3 standard library only.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Results:
    """Thread-safe pass/fail counter. Every check prints its failures with the details."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.lock = threading.Lock()

    def check(self, name, ok, detail=""):
        with self.lock:
            if ok:
                self.passed += 1
            else:
                self.failed += 1
                msg = "FAIL: " + name
                if detail:
                    msg += "\n      " + str(detail)[:2000].replace("\n", "\n      ")
                print(msg, flush=True)
        return bool(ok)

    def eq(self, name, got, want):
        return self.check(name, got == want, "got:  %r\n want: %r" % (got, want))

    def summary(self):
        return "%d passed, %d failed" % (self.passed, self.failed)

    def phase(self, name, fn, *args):
        """Runs one phase of a test; a crash fails that phase, not the whole run."""
        start = time.monotonic()
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a crash is a failure of this phase, not of the run
            self.check("phase %s ran to the end" % name, False, traceback.format_exc())
        print("phase %-22s %5.1f s   (%s so far)" % (name, time.monotonic() - start,
                                                      self.summary()), flush=True)


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self._json = None
        self.json_error = None
        if body:
            try:
                self._json = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                self.json_error = str(e)

    @property
    def json(self):
        return self._json

    @property
    def ctype(self):
        return self.headers.get("content-type", "")

    def is_json(self):
        return self.ctype.startswith("application/json") and self.json_error is None

    def __repr__(self):
        return "HTTP %d %s" % (self.status, self.body[:400].decode("utf-8", "replace"))


class Client:
    """One new connection per request (so it is safe across threads). Counts the answers by
    (method, path without the query, status) for the metrics cross-check."""

    def __init__(self, port):
        self.port = port
        self.counts = {}
        self.lock = threading.Lock()

    def call(self, method, path, body=None, ctype=None, timeout=30, headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            ctype = ctype or "application/json"
        elif isinstance(body, str):
            body = body.encode("utf-8")
        hdrs = dict(headers or {})
        if ctype:
            hdrs["Content-Type"] = ctype
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            resp = Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()
        key = (method, path.split("?", 1)[0], resp.status)
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
        return resp

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def raw(self, data, timeout=10):
        """Sends raw bytes, returns the status of the first answer (or None) and its bytes."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        out = b""
        try:
            try:
                s.sendall(data)
            except OSError:
                pass  # the server may answer (e.g. 413) and close before reading it all
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
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
            try:
                status = int(out.split(b" ", 2)[1])
            except (IndexError, ValueError):
                pass
        return status, out


def q(s):
    """Percent-encodes a path segment completely (slashes, spaces, UTF-8)."""
    return urllib.parse.quote(s, safe="")


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def engine_binary():
    """The engine under test: argv[1], else $PT_BIN, else build/patterntrack."""
    return (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PT_BIN")) or os.path.join(
        ROOT, "build", "patterntrack")


def fresh_db(base, name):
    """Drops and creates database `name` (UTF-8, C collation, so orders are byte orders) next
    to the one in `base`, and returns its URL."""
    psql(base, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % name)
    psql(base, "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' "
               "LC_CTYPE 'C'" % name)
    return db_url_for(base, name)


def db_url_for(url, dbname):
    """The same connection URL with another database name."""
    p = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((p.scheme, p.netloc, "/" + dbname, p.query, p.fragment))


def psql(url, sql, timeout=60):
    r = subprocess.run(["psql", url, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PGCLIENTENCODING="UTF8", PGCONNECT_TIMEOUT="10"))
    if r.returncode != 0:
        raise RuntimeError("psql failed: %s" % r.stderr.strip())
    return r.stdout


def services(*args, timeout=180):
    """scripts/services ARGS; returns (exit code, stderr tail)."""
    r = subprocess.run([os.path.join(ROOT, "scripts", "services")] + list(args), cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, (r.stderr or "")[-1500:]


def poll(fn, timeout, interval=0.1):
    """Calls fn until it returns a true value; returns that value, or None after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = fn()
        except (OSError, http.client.HTTPException):
            v = None
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class Server:
    """build/patterntrack on a port of ours, with a temporary config, cwd = the repo root."""

    def __init__(self, binary, database_url, port, config_text):
        self.binary = binary
        self.port = port
        fd, self.config = tempfile.mkstemp(prefix="pt-it-api-", suffix=".lua")
        with os.fdopen(fd, "w") as f:
            f.write(config_text)
        self.log = tempfile.NamedTemporaryFile(prefix="pt-it-api-", suffix=".log", delete=False)
        env = dict(os.environ, DATABASE_URL=database_url, HTTP_PORT=str(port),
                   KAFKA_ENABLE_CONSUMER="false")
        env.pop("PATTERNTRACK_ROOT", None)
        self.proc = subprocess.Popen([binary, "--config", self.config], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def wait_ready(self, client, timeout=30):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("patterntrack exited with %s during start-up"
                                   % self.proc.returncode)
            return client.get("/health", timeout=2).status == 200
        return poll(ready, timeout)

    def log_tail(self, n=30):
        try:
            with open(self.log.name, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout=30):
        """SIGTERM, then the exit code (None if it did not exit; it is then killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def cleanup(self, keep_log=False):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.unlink(self.config)
        except OSError:
            pass
        if not keep_log:
            try:
                os.unlink(self.log.name)
            except OSError:
                pass
        else:
            print("patterntrack log kept in " + self.log.name, file=sys.stderr)


def parse_prometheus(text):
    """Parses the text exposition format strictly enough to catch malformed output.
    Returns (samples, types, errors): samples is a list of (name, labels dict, value)."""
    import re
    samples, types, helps, errors = [], {}, {}, []
    name_re = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    sample_re = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$")
    label_re = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
    for i, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                if not name_re.match(parts[2]):
                    errors.append("line %d: bad metric name in %r" % (i, line))
                if parts[1] == "TYPE":
                    t = parts[3].strip() if len(parts) > 3 else ""
                    if t not in ("counter", "gauge", "histogram", "summary", "untyped"):
                        errors.append("line %d: bad type %r" % (i, t))
                    if parts[2] in types:
                        errors.append("line %d: second TYPE for %s" % (i, parts[2]))
                    types[parts[2]] = t
                else:
                    helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        m = sample_re.match(line)
        if not m:
            errors.append("line %d: not a sample: %r" % (i, line))
            continue
        labels = {}
        body = m.group(3) or ""
        pos = 0
        while pos < len(body):
            lm = label_re.match(body, pos)
            if not lm:
                errors.append("line %d: bad labels: %r" % (i, line))
                break
            labels[lm.group(1)] = lm.group(2).replace('\\"', '"').replace("\\n", "\n") \
                .replace("\\\\", "\\")
            pos = lm.end()
        try:
            value = float(m.group(4))
        except ValueError:
            errors.append("line %d: bad value: %r" % (i, line))
            continue
        samples.append((m.group(1), labels, value))
    for name, _, _ in samples:
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in types:
                base = name[: -len(suffix)]
        if base not in types:
            errors.append("sample %s has no # TYPE" % name)
            break
    return samples, types, errors


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for n, ls, v in samples:
        if n == name and all(ls.get(k) == want for k, want in labels.items()):
            total += v
    return total


def run_suite(R, db_name, config, make_ctx, phases, preflight=None, after=None, drop_db=False):
    """The main of a suite that runs phases against one engine: checks that DATABASE_URL and
    the binary are there (and preflight(), when given), creates db_name afresh, starts the
    engine with config, builds ctx = make_ctx(client, server, db_url, binary), waits for
    /health and runs phases(ctx); then, whatever happened, after(ctx) (when given), SIGTERM
    (exit 0 expected), the log's tail if anything failed, and the database dropped when
    drop_db and all passed. Returns the exit status."""
    binary = engine_binary()
    base = os.environ.get("DATABASE_URL")
    if not R.check("DATABASE_URL is set (eval \"$(scripts/services up)\")", bool(base)):
        print(R.summary())
        return 1
    if not R.check("patterntrack binary exists: " + binary, os.access(binary, os.X_OK)):
        print(R.summary())
        return 1
    if preflight is not None and not preflight():
        print(R.summary())
        return 1
    try:
        db = fresh_db(base, db_name)
    except RuntimeError as e:
        R.check("create database " + db_name, False, e)
        print(R.summary())
        return 1
    port = free_port()
    server = Server(binary, db, port, config)
    client = Client(port)
    ctx = make_ctx(client, server, db, binary)
    started = time.monotonic()
    try:
        try:
            ready = server.wait_ready(client, 30)
        except RuntimeError as e:
            ready = False
            print(e)
        if R.check("patterntrack answers /health within 30 s", ready, server.log_tail()):
            phases(ctx)
    finally:
        if after is not None:
            after(ctx)
        code = server.stop()
        R.eq("SIGTERM: patterntrack exits with 0", code, 0)
        if R.failed:
            print("--- patterntrack log (tail) ---\n" + server.log_tail(40))
        server.cleanup(keep_log=R.failed > 0)
        if drop_db and not R.failed:
            try:
                psql(base, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db_name)
            except RuntimeError:
                pass
    print("total %.1f s" % (time.monotonic() - started))
    print(R.summary())
    return 1 if R.failed else 0
