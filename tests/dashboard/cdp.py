"""Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe), for
tests/dashboard/test_dashboard.py. Python 3 standard library only; needs Debian's chromium.

Owns: starting and stopping the browser (its own temporary profile, loopback only), one CDP
connection (requests with ids, events per session), and pages: navigate, evaluate, viewport,
screenshot, request interception. Knows nothing of the dashboard.
"""

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time

CHROMIUM_CANDIDATES = ["chromium", "chromium-browser", "google-chrome"]


def find_chromium():
    env = os.environ.get("CHROMIUM")
    if env:
        return env
    for name in CHROMIUM_CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


class CDPError(Exception):
    pass


class Browser:
    """One headless Chromium. The DevTools pipe is fd 3 (we write) and fd 4 (we read) in the
    child; the flags keep it from reaching any host but the pages we open."""

    def __init__(self, binary, log_path):
        self.profile = tempfile.mkdtemp(prefix="pt-dashboard-chromium-")
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()
        # The child needs them as exactly 3 and 4: move ours out of the way first so that no
        # dup2 below can land on a descriptor still needed.
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def child_fds():
            os.dup2(hi_r, 3)  # dup2 onto another number clears close-on-exec
            os.dup2(hi_w, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--disable-default-apps",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                "--mute-audio", "--hide-scrollbars", "--lang=en-US",
                "--user-data-dir=" + self.profile, "--remote-debugging-pipe", "about:blank"]
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, close_fds=False,
                                     preexec_fn=child_fds,
                                     env=dict(os.environ, LANG="en_US.UTF-8", TZ="UTC"))
        os.close(hi_r)
        os.close(hi_w)
        self._next = 0
        self._lock = threading.Lock()
        self._waiting = {}
        self.events = []  # (sessionId, method, params), in arrival order
        self._events_lock = threading.Lock()
        self.handlers = {}  # (sessionId, method) -> fn(params), run on the reader thread
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_loop(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                try:
                    msg = json.loads(raw.decode("utf-8"))
                except ValueError:
                    continue
                if "id" in msg:
                    with self._lock:
                        q = self._waiting.pop(msg["id"], None)
                    if q is not None:
                        q.put(msg)
                else:
                    sid = msg.get("sessionId")
                    method = msg.get("method")
                    params = msg.get("params", {})
                    with self._events_lock:
                        self.events.append((sid, method, params))
                    fn = self.handlers.get((sid, method))
                    if fn is not None:
                        try:
                            fn(params)
                        except Exception as e:  # noqa: BLE001 - must not kill the reader
                            with self._events_lock:
                                self.events.append((sid, "handler.error", {"error": repr(e)}))
        self._closed = True
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for q in waiting.values():
            q.put({"error": {"message": "browser connection closed"}})

    def send(self, method, params=None, session=None, timeout=30, wait=True):
        with self._lock:
            self._next += 1
            mid = self._next
            q = queue.Queue(1) if wait else None
            if q is not None:
                self._waiting[mid] = q
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode("utf-8") + b"\0"
        with self._lock:
            if self._closed:
                raise CDPError("browser connection closed")
            os.write(self._to_child_w, data)
        if q is None:
            return None
        try:
            reply = q.get(timeout=timeout)
        except queue.Empty:
            with self._lock:
                self._waiting.pop(mid, None)
            raise CDPError("%s: no answer within %s s" % (method, timeout))
        if "error" in reply:
            raise CDPError("%s: %s" % (method, reply["error"].get("message")))
        return reply.get("result", {})

    def version(self):
        return self.send("Browser.getVersion", timeout=30)

    def new_page(self, width=1280, height=2000):
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"]
        page = Page(self, target, session)
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(domain + ".enable", session=session)
        page.viewport(width, height)
        return page

    def events_of(self, session, method=None):
        with self._events_lock:
            return [(m, p) for s, m, p in self.events
                    if s == session and (method is None or m == method)]

    def close(self):
        try:
            if self.proc.poll() is None and not self._closed:
                self.send("Browser.close", timeout=5)
        except (CDPError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child_w, self._from_child_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser, target, session):
        self.b = browser
        self.target = target
        self.session = session

    def send(self, method, params=None, **kw):
        return self.b.send(method, params, session=self.session, **kw)

    def on(self, method, fn):
        self.b.handlers[(self.session, method)] = fn

    def viewport(self, width, height):
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1,
            "mobile": width < 600})

    def navigate(self, url):
        r = self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CDPError("navigate %s: %s" % (url, r["errorText"]))
        return r

    def eval(self, expr, timeout=30):
        """Evaluates a JavaScript expression; returns its value (JSON-able), awaiting promises."""
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True}, timeout=timeout)
        if r.get("exceptionDetails"):
            d = r["exceptionDetails"]
            raise CDPError("evaluate: %s" % ((d.get("exception") or {}).get("description")
                                             or d.get("text")))
        return (r.get("result") or {}).get("value")

    def wait_for(self, expr, timeout=20, interval=0.1):
        """Polls a JavaScript expression until it is truthy; returns its value or None."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                v = self.eval(expr)
            except CDPError:
                v = None
            if v:
                return v
            if time.monotonic() >= deadline:
                return None
            time.sleep(interval)

    def screenshot(self, path, full_height=None):
        """Saves a PNG of the viewport, or of the whole page up to full_height pixels."""
        params = {"format": "png"}
        if full_height:
            m = self.send("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m.get("contentSize")
            h = min(int(size["height"]) + 1, full_height)
            w = int(self.eval("window.innerWidth"))
            params.update({"captureBeyondViewport": True,
                           "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}})
        data = self.send("Page.captureScreenshot", params, timeout=60)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def html(self):
        return self.eval("'<!doctype html>\\n' + document.documentElement.outerHTML")

    def intercept(self, patterns, fn):
        """Pauses every request matching one of the URL patterns and calls fn(url) on the
        reader thread: fn returns None (let it through), ("fail", reason) or
        (status, content_type, body bytes)."""
        def paused(params):
            rid = params["requestId"]
            url = params["request"]["url"]
            try:
                what = fn(url)
            except Exception as e:  # noqa: BLE001 - answer the request whatever happens
                what = (599, "text/plain", ("interceptor error: %r" % e).encode())
            if what is None:
                self.send("Fetch.continueRequest", {"requestId": rid}, wait=False)
            elif what[0] == "fail":
                self.send("Fetch.failRequest", {"requestId": rid, "errorReason": what[1]},
                          wait=False)
            else:
                status, ctype, body = what
                self.send("Fetch.fulfillRequest", {
                    "requestId": rid, "responseCode": status,
                    "responseHeaders": [{"name": "Content-Type", "value": ctype},
                                        {"name": "Cache-Control", "value": "no-store"}],
                    "body": base64.b64encode(body).decode("ascii")}, wait=False)
        self.on("Fetch.requestPaused", paused)
        self.send("Fetch.enable", {"patterns": [{"urlPattern": p, "requestStage": "Request"}
                                                for p in patterns]})

    def close(self):
        try:
            self.b.send("Target.closeTarget", {"targetId": self.target}, timeout=10)
        except CDPError:
            pass
