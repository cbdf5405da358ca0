/* patterntrack dashboard: reads the engine's JSON API and renders it, refreshing in place.
 *
 * Contract with the page (index.html): one <section class="panel" id="panel-NAME"> per panel,
 * each with a .msg line (loading / empty / error / database down / not available) and a .body.
 * Every string that comes from the API reaches the DOM through textContent or an attribute
 * set with setAttribute, never as HTML, so pattern IDs and names may hold any text.
 *
 * Optional routes (trends, heatmap, co-occurrence, agents) are used when /openapi.json lists
 * them; otherwise the panel says "not available", or falls back to what the seed API can
 * answer and says so.
 *
 * URL parameters: refresh=SECONDS (default 10, 0 = never), pattern=ID, agent=NAME.
 * URL fragment: #token=TOKEN, the bearer token of an engine that guards reads
 * (http_token_reads); it is sent as Authorization: Bearer on every API request, kept for this
 * tab only (sessionStorage) and removed from the address bar. A fragment never reaches a server
 * or its logs.
 * For tests: body[data-state] is "ready" after the first full refresh and
 * body[data-refresh-count] counts completed refreshes.
 */
(function () {
    "use strict";

    var API = "../"; /* the page is /dashboard/: the API is beside it, wherever it is mounted */
    var TIMEOUT_MS = 10000;
    var UNUSED_DAYS = 30;
    var STALE_DAYS = 90;
    var TOP_SHOWN = 20;
    var TOP_FETCHED = 100;
    var LIST_SHOWN = 50;
    var COOC_SHOWN = 10;

    var P = {
        summary: "/api/patterns/usage/summary",
        top: "/api/patterns/usage/top",
        unused: "/api/patterns/usage/unused",
        stale: "/api/patterns/usage/stale",
        trends: "/api/patterns/usage/trends",
        heatmap: "/api/patterns/usage/heatmap",
        pattern: "/api/patterns/usage/{pattern_id}",
        cooc: "/api/patterns/usage/{pattern_id}/cooccurring",
        agents: "/api/agents",
        profile: "/api/agents/{agent_name}/profile",
        byAgent: "/api/patterns/usage/by-agent/{agent_name}",
    };

    var params = new URLSearchParams(location.search);
    var token = takeToken();
    var state = {
        refresh: parseRefresh(params.get("refresh")),
        paused: false,
        timer: null,
        running: null,
        count: 0,
        openapi: null, /* {paths: {...}} once loaded; null = unknown */
        openapiAt: 0,
        pattern: params.get("pattern") || null, /* chosen by the user */
        agent: params.get("agent") || null,
        top: null, /* last top list (up to TOP_FETCHED) */
        chart: null,
        dbDown: false,
        unreachable: false,
    };

    function takeToken() {
        var KEY = "patterntrack.token";
        var frag = new URLSearchParams(location.hash.replace(/^#/, ""));
        var t = frag.get("token");
        try {
            if (t) {
                sessionStorage.setItem(KEY, t);
                frag.delete("token");
                var rest = frag.toString();
                history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
            } else {
                t = sessionStorage.getItem(KEY);
            }
        } catch (e) {
            /* no storage (disabled): the token stays in the fragment, which still works */
        }
        return t || null;
    }

    function parseRefresh(v) {
        if (v === null || v === "") {
            return 10;
        }
        var n = Number(v);
        if (!isFinite(n) || n < 0) {
            return 10;
        }
        return n === 0 ? 0 : Math.min(Math.max(n, 1), 86400);
    }

    /* ------------------------------------------------------------ DOM helpers */

    /* h("td", {class: "num", title: t}, child...): strings become text nodes. */
    function h(tag, attrs) {
        var e = document.createElement(tag);
        if (attrs) {
            Object.keys(attrs).forEach(function (k) {
                var v = attrs[k];
                if (v === null || v === undefined || v === false) {
                    return;
                }
                if (k === "onclick") {
                    e.addEventListener("click", v);
                } else {
                    e.setAttribute(k, String(v));
                }
            });
        }
        for (var i = 2; i < arguments.length; i++) {
            append(e, arguments[i]);
        }
        return e;
    }

    function append(e, c) {
        if (c === null || c === undefined || c === false) {
            return;
        }
        if (Array.isArray(c)) {
            c.forEach(function (x) {
                append(e, x);
            });
        } else if (typeof c === "object" && c.nodeType) {
            e.appendChild(c);
        } else {
            e.appendChild(document.createTextNode(String(c)));
        }
    }

    function clear(e) {
        while (e.firstChild) {
            e.removeChild(e.firstChild);
        }
        return e;
    }

    function fill(e) {
        clear(e);
        for (var i = 1; i < arguments.length; i++) {
            append(e, arguments[i]);
        }
        return e;
    }

    function $(sel, root) {
        return (root || document).querySelector(sel);
    }

    /* ------------------------------------------------------------ formatting */

    var intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
    var decFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });

    function num(v) {
        return typeof v === "number" && isFinite(v) ? v : typeof v === "string" && v.trim() !== "" && isFinite(Number(v)) ? Number(v) : NaN;
    }

    function fmtInt(v) {
        var n = num(v);
        return isNaN(n) ? "—" : intFmt.format(n);
    }

    function fmtDec(v) {
        var n = num(v);
        return isNaN(n) ? "—" : decFmt.format(n);
    }

    function fmtPct(v) {
        var n = num(v);
        return isNaN(n) ? "—" : decFmt.format(n) + " %";
    }

    function fmtRatio(v) {
        var n = num(v);
        return isNaN(n) ? "—" : n.toFixed(n >= 10 ? 1 : 2);
    }

    function fmtTime(iso) {
        if (typeof iso !== "string" || iso === "") {
            return "never";
        }
        var d = new Date(iso);
        if (isNaN(d.getTime())) {
            return iso;
        }
        return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
    }

    function plural(n, one, many) {
        return fmtInt(n) + " " + (num(n) === 1 ? one : many);
    }

    function str(v, fallback) {
        return typeof v === "string" && v !== "" ? v : typeof v === "number" ? String(v) : fallback;
    }

    function pick(o, names) {
        for (var i = 0; i < names.length; i++) {
            if (o && o[names[i]] !== undefined && o[names[i]] !== null) {
                return o[names[i]];
            }
        }
        return undefined;
    }

    /* ------------------------------------------------------------ API access */

    function ApiError(kind, status, detail, path) {
        this.kind = kind; /* network timeout db missing notfound invalid auth server badjson shape */
        this.status = status;
        this.detail = detail;
        this.path = path;
    }

    function detailOf(body, text) {
        if (body && typeof body === "object") {
            var d = body.detail;
            var out;
            if (typeof d === "string") {
                out = d;
            } else if (Array.isArray(d)) {
                out = d.map(function (x) {
                    var loc = x && Array.isArray(x.loc) ? x.loc.join(".") + ": " : "";
                    return loc + (x && x.msg ? x.msg : JSON.stringify(x));
                }).join("; ");
            } else if (typeof body.error === "string") {
                out = body.error;
            }
            if (body.error_id) {
                out = (out ? out + " " : "") + "(error id " + body.error_id + ", in the engine's log)";
            }
            if (out) {
                return out;
            }
        }
        return typeof text === "string" ? text.slice(0, 200) : "";
    }

    function requestHeaders(opts) {
        var h = { Accept: opts.text ? "text/plain" : "application/json" };
        if (token) {
            h.Authorization = "Bearer " + token;
        }
        return h;
    }

    /* GET path (absolute API path with its query) -> parsed JSON, or throws an ApiError.
     * opts.text: return the body as text; opts.any: return {status, body} for any status. */
    function get(path, opts) {
        opts = opts || {};
        var ctrl = typeof AbortController === "function" ? new AbortController() : null;
        var timer = setTimeout(function () {
            if (ctrl) {
                ctrl.abort();
            }
        }, TIMEOUT_MS);
        var status = 0;
        return fetch(API + path.replace(/^\//, ""), {
            signal: ctrl ? ctrl.signal : undefined,
            cache: "no-store",
            headers: requestHeaders(opts),
        }).then(function (resp) {
            status = resp.status;
            return resp.text();
        }, function () {
            throw new ApiError(ctrl && ctrl.signal.aborted ? "timeout" : "network", 0, "", path);
        }).then(function (text) {
            clearTimeout(timer);
            if (opts.text && status === 200) {
                return text;
            }
            var body;
            var parsed = false;
            try {
                body = JSON.parse(text);
                parsed = true;
            } catch (e) {
                body = undefined;
            }
            if (opts.any && parsed) {
                return { status: status, body: body };
            }
            if (status < 200 || status > 299) {
                var kind = status === 503 ? "db" : status === 404 ? "notfound" : status === 422 || status === 400 ? "invalid" : status === 401 ? "auth" : "server";
                throw new ApiError(kind, status, detailOf(body, text), path);
            }
            if (!parsed) {
                throw new ApiError("badjson", status, "the answer is not JSON", path);
            }
            return body;
        }, function (err) {
            clearTimeout(timer);
            if (err instanceof ApiError) {
                throw err;
            }
            throw new ApiError(ctrl && ctrl.signal.aborted ? "timeout" : "network", status, "", path);
        });
    }

    function describe(err) {
        if (!(err instanceof ApiError)) {
            return "The page failed to show this panel: " + (err && err.message ? err.message : String(err));
        }
        var where = "GET " + err.path.split("?")[0];
        switch (err.kind) {
        case "network":
            return "Cannot reach the patterntrack engine (" + where + " failed). Is it running? Retrying" + retryText() + ".";
        case "timeout":
            return "The engine did not answer " + where + " within " + TIMEOUT_MS / 1000 + " s. Retrying" + retryText() + ".";
        case "db":
            /* the engine's detail adds nothing but an error id when it is the usual one */
            return "Database unavailable: PostgreSQL cannot be reached (HTTP 503" + (err.detail && !/^database unavailable/i.test(err.detail) ? ": " + err.detail : "") + "). The figures come back by themselves when it is up again.";
        case "missing":
            return "Not available: this engine does not serve " + where + " (yet).";
        case "notfound":
            return "Not found (HTTP 404): " + (err.detail || where);
        case "auth":
            return (token ? "The engine refused this page's bearer token" : "The engine needs a bearer token to read") +
                " (HTTP 401 from " + where + "): open the dashboard as /dashboard/#token=YOUR_TOKEN.";
        case "invalid":
            return "The API rejected " + where + " (HTTP " + err.status + "): " + (err.detail || "invalid request");
        case "badjson":
            return "Unexpected answer from " + where + " (HTTP " + err.status + "): not JSON.";
        case "shape":
            return "Unexpected answer from " + where + ": " + err.detail + ".";
        default:
            return "API error from " + where + " (HTTP " + err.status + ")" + (err.detail ? ": " + err.detail : "") + ".";
        }
    }

    function retryText() {
        return state.refresh > 0 && !state.paused ? " every " + state.refresh + " s" : " when you press Refresh";
    }

    function shapeError(path, what) {
        return new ApiError("shape", 200, what, path);
    }

    /* A JSON list, bare or wrapped in an object under a usual key. */
    function listOf(body, path) {
        if (Array.isArray(body)) {
            return body;
        }
        if (body && typeof body === "object") {
            var keys = ["items", "patterns", "data", "results", "trends", "agents", "cooccurring", "rows"];
            for (var i = 0; i < keys.length; i++) {
                if (Array.isArray(body[keys[i]])) {
                    return body[keys[i]];
                }
            }
        }
        throw shapeError(path, "expected a list");
    }

    function objectOf(body, path) {
        if (body && typeof body === "object" && !Array.isArray(body)) {
            return body;
        }
        throw shapeError(path, "expected an object");
    }

    function enc(s) {
        return encodeURIComponent(s);
    }

    function fillPath(template, value) {
        return template.replace(/\{[a-z_]+\}/, enc(value));
    }

    /* ------------------------------------------------------------ which routes exist */

    function loadOpenapi() {
        return get("/openapi.json").then(function (doc) {
            if (doc && typeof doc.paths === "object") {
                state.openapi = doc;
                state.openapiAt = Date.now();
            }
        }, function () {
            /* keep what we knew; without it every route is tried */
        });
    }

    function route(path) {
        if (!state.openapi) {
            return null; /* unknown */
        }
        var r = state.openapi.paths[path];
        return r && r.get ? r.get : false;
    }

    function has(path) {
        return route(path) !== false;
    }

    function hasParam(path, name) {
        var r = route(path);
        if (!r) {
            return r === null;
        }
        return (r.parameters || []).some(function (p) {
            return p && p.name === name;
        });
    }

    /* Fetches an optional route: not in /openapi.json, or a 404 while the route list is
     * unknown, means the engine does not serve it. */
    function getOptional(template, path) {
        if (!has(template)) {
            return Promise.reject(new ApiError("missing", 404, "", template));
        }
        return get(path).catch(function (err) {
            if (err.kind === "notfound" && route(template) === null) {
                err.kind = "missing";
                err.path = template;
            }
            throw err;
        });
    }

    /* ------------------------------------------------------------ panels */

    function Panel(name) {
        this.name = name;
        this.root = document.getElementById("panel-" + name);
        this.msg = $(".msg", this.root);
        this.body = $(".body", this.root);
        this.seq = 0;
    }

    /* A panel's state: the message alone (kind: loading empty error db network timeout
     * unavailable), or the body with an optional message above it. */
    Panel.prototype.message = function (kind, text) {
        this.root.setAttribute("data-state", kind);
        this.msg.className = "msg " + kind;
        fill(this.msg, text);
        this.msg.hidden = false;
        this.body.hidden = true;
    };
    Panel.prototype.show = function (kind, text) {
        this.root.setAttribute("data-state", kind || "ok");
        if (text) {
            this.msg.className = "msg " + (kind || "ok");
            fill(this.msg, text);
            this.msg.hidden = false;
        } else {
            this.msg.hidden = true;
        }
        this.body.hidden = false;
    };
    Panel.prototype.fail = function (err) {
        var kind = err instanceof ApiError ? err.kind : "error";
        if (kind === "missing") {
            kind = "unavailable";
        } else if (kind !== "db" && kind !== "network" && kind !== "timeout") {
            kind = "error";
        }
        if (err instanceof ApiError && err.kind === "db") {
            state.dbDown = true;
        }
        if (!(err instanceof ApiError) && window.console) {
            console.error(err);
        }
        this.message(kind, describe(err));
    };
    Panel.prototype.link = function (path) {
        $("a.json", this.root).setAttribute("href", API + path.replace(/^\//, ""));
    };
    /* Runs load(); a later run of the same panel makes an earlier one's answer moot. */
    Panel.prototype.run = function (load) {
        var self = this;
        var seq = ++this.seq;
        var current = function () {
            return seq === self.seq;
        };
        return Promise.resolve().then(function () {
            return load(current);
        }).catch(function (err) {
            if (current()) {
                self.fail(err);
            }
        });
    };

    var panels = {};
    ["summary", "top", "trends", "unused", "stale", "deadletters", "heatmap", "pattern", "cooccurring", "agents"].forEach(function (n) {
        panels[n] = new Panel(n);
    });

    /* A pattern's name, and its ID below when they differ; a button chooses it. */
    function patternLabel(item, clickable) {
        var id = str(item.pattern_id, "");
        var name = str(item.pattern_name, id);
        var main = clickable && id ? h("button", {
            type: "button", class: "link pname", title: "Show " + id,
            onclick: function () {
                choosePattern(id);
            },
        }, name) : h("span", { class: "pname" }, name);
        return name === id ? main : [main, h("br"), h("span", { class: "id" }, id)];
    }

    function trendMark(item) {
        var t = str(item.trend, "");
        var pct = Math.abs(num(item.trend_percentage));
        if (t === "increasing") {
            return h("span", { class: "up", title: "increasing" }, "▲ +" + fmtDec(pct) + " %");
        }
        if (t === "decreasing") {
            return h("span", { class: "down", title: "decreasing" }, "▼ −" + fmtDec(pct) + " %");
        }
        if (t === "stable") {
            /* the API gives the size only; the counts, when given, tell the sign */
            var d = num(pick(item, RECENT)) - num(pick(item, PREVIOUS));
            return h("span", { class: "flat", title: "stable (within ±10 %)" }, "▶ " + (d > 0 ? "+" : d < 0 ? "−" : "") + fmtDec(pct) + " %");
        }
        return h("span", { class: "flat", title: "no usage in the earlier window" }, "—");
    }

    /* ---- summary */

    var SUMMARY_FIELDS = [
        ["total_patterns", "Total patterns", fmtInt],
        ["used_patterns", "Used", fmtInt],
        ["unused_patterns", "Never used", fmtInt],
        ["usage_rate", "Usage rate", fmtPct],
        ["total_agents", "Active agents", fmtInt],
        ["total_usage", "Total usage", fmtInt],
        ["avg_usage_per_pattern", "Avg uses / pattern", fmtDec],
    ];

    function loadSummary() {
        var p = panels.summary;
        return p.run(function (current) {
            return get(P.summary).then(function (body) {
                var s = objectOf(body, P.summary);
                if (!current()) {
                    return;
                }
                fill($(".stats", p.body), SUMMARY_FIELDS.map(function (f) {
                    return h("div", { class: "stat" }, h("dt", null, f[1]), h("dd", { "data-field": f[0] }, f[2](s[f[0]])));
                }));
                if (num(s.total_patterns) === 0 && num(s.total_usage) === 0) {
                    p.show("empty", "The database is empty: no pattern is registered and no usage has been counted yet. " +
                        "Register patterns (PUT /api/patterns/{id} or POST /api/patterns) and send events " +
                        "(Kafka, or POST /api/patterns/usage/events).");
                } else {
                    p.show("ok");
                }
            });
        });
    }

    /* ---- most used */

    function topWindow() {
        /* A ranking over a recent window if /top can give one; the seed's /top is all time. */
        var r = route(P.top);
        var names = ["days", "window_days", "since_days"];
        for (var i = 0; r && i < names.length; i++) {
            if (hasParam(P.top, names[i])) {
                return names[i];
            }
        }
        return null;
    }

    function loadTop() {
        var p = panels.top;
        var win = topWindow();
        var q = "?limit=" + TOP_FETCHED + (win ? "&" + win + "=30" : "");
        p.link(P.top + "?limit=" + TOP_SHOWN + (win ? "&" + win + "=30" : ""));
        fill($(".window", p.root), win ? "last 30 days" : "all time");
        var result = get(P.top + q).then(function (body) {
            return listOf(body, P.top);
        });
        p.run(function (current) {
            return result.then(function (list) {
                if (!current()) {
                    return;
                }
                state.top = list;
                updateDatalist(list);
                if (list.length === 0) {
                    destroyChart();
                    p.message("empty", "No usage counted yet: no pattern has been used.");
                    return;
                }
                renderTop(list.slice(0, TOP_SHOWN), win);
                p.show("ok");
            });
        });
        return result.catch(function () {
            return null;
        });
    }

    /* The count a ranking is by: uses in the window when there is one, else all-time uses. */
    function topCount(it, win) {
        return win && it.usage_in_window !== undefined ? it.usage_in_window : it.usage_count;
    }

    function renderTop(list, win) {
        var p = panels.top;
        fill($(".note", p.body), win ? "Uses in the last 30 days." :
            "All-time usage counts (the engine has no 30-day ranking). Click a pattern for its details.");
        var rows = list.map(function (it, i) {
            var id = str(it.pattern_id, "");
            return h("tr", { class: id === chosenPattern() ? "chosen" : null, "data-pattern-id": id },
                h("td", { class: "num" }, i + 1),
                h("td", null, patternLabel(it, true)),
                h("td", { class: "opt" }, str(it.pattern_type, "—")),
                h("td", { class: "num", "data-field": "usage_count" }, fmtInt(topCount(it, win))),
                h("td", { class: "num opt" }, fmtInt(pick(it, ["agent_count"]))),
                h("td", { class: "trend-cell" }, trendMark(it)));
        });
        fill($("tbody", p.body), rows);
        drawChart(list);
    }

    function truncate(s, n) {
        return s.length > n ? s.slice(0, n - 1) + "…" : s;
    }

    function destroyChart() {
        if (state.chart) {
            state.chart.destroy();
            state.chart = null;
        }
    }

    function drawChart(list) {
        var box = $(".chart-box", panels.top.body);
        if (typeof window.Chart !== "function") {
            box.hidden = true;
            fill($(".note", panels.top.body), "The chart library did not load; the table below has the same figures.");
            return;
        }
        box.hidden = false;
        box.style.height = Math.max(120, list.length * 24 + 50) + "px";
        var labels = list.map(function (it) {
            return str(it.pattern_name, str(it.pattern_id, "?"));
        });
        var ids = list.map(function (it) {
            return str(it.pattern_id, "");
        });
        var data = list.map(function (it) {
            return num(topCount(it, topWindow())) || 0;
        });
        if (state.chart) {
            state.chart.data.labels = labels;
            state.chart.data.datasets[0].data = data;
            state.chart.$ids = ids;
            state.chart.update("none");
            return;
        }
        var chart = new window.Chart($("canvas", box), {
            type: "bar",
            data: { labels: labels, datasets: [{ label: "Uses", data: data, backgroundColor: "#3b6fe0", borderRadius: 3, maxBarThickness: 18 }] },
            options: {
                indexAxis: "y",
                responsive: true,
                maintainAspectRatio: false,
                animation: false,
                plugins: {
                    legend: { display: false },
                    tooltip: {
                        callbacks: {
                            title: function (items) {
                                var c = items[0].chart;
                                var i = items[0].dataIndex;
                                var l = c.data.labels[i];
                                return l === c.$ids[i] ? l : l + " (" + c.$ids[i] + ")";
                            },
                        },
                    },
                },
                scales: {
                    x: { beginAtZero: true, ticks: { precision: 0 } },
                    y: {
                        ticks: {
                            autoSkip: false,
                            callback: function (v, i) {
                                /* `this` is the scale (the chart may still be being built). On a
                                 * narrow screen the bars carry the table's rank numbers. */
                                var w = (this.chart && this.chart.width) || 600;
                                return w < 500 ? "#" + (i + 1) : truncate(String(this.getLabelForValue(v)), 32);
                            },
                        },
                    },
                },
                onClick: function (evt, els, c) {
                    if (els && els.length) {
                        choosePattern(c.$ids[els[0].index]);
                    }
                },
            },
        });
        chart.$ids = ids;
        state.chart = chart;
    }

    function updateDatalist(list) {
        fill($("#pattern-ids"), list.map(function (it) {
            return h("option", { value: str(it.pattern_id, "") });
        }));
    }

    /* ---- trends */

    function loadTrends(topP) {
        var p = panels.trends;
        return p.run(function (current) {
            if (!has(P.trends)) {
                /* Fallback: the trend fields of the most used patterns. */
                p.link(P.top + "?limit=" + TOP_FETCHED);
                return topP.then(function (list) {
                    if (!current()) {
                        return;
                    }
                    if (!list) {
                        throw panels.top.root.getAttribute("data-state") === "db" ? new ApiError("db", 503, "", P.top) : new ApiError("server", 0, "the most used patterns could not be read", P.top);
                    }
                    var byPct = function (a, b) {
                        return (Math.abs(num(b.trend_percentage)) || 0) - (Math.abs(num(a.trend_percentage)) || 0);
                    };
                    var rising = list.filter(function (x) {
                        return x.trend === "increasing";
                    }).sort(byPct);
                    var falling = list.filter(function (x) {
                        return x.trend === "decreasing";
                    }).sort(byPct);
                    renderTrends({ rising: rising, falling: falling, window: 7, empty: list.length === 0,
                        note: "This engine has no /api/patterns/usage/trends: computed from the " + TOP_FETCHED + " most used patterns." });
                });
            }
            var withDir = hasParam(P.trends, "direction");
            p.link(P.trends + "?direction=increasing&limit=10");
            var req = withDir ? Promise.all([
                getOptional(P.trends, P.trends + "?direction=increasing&limit=10"),
                getOptional(P.trends, P.trends + "?direction=decreasing&limit=10"),
            ]) : getOptional(P.trends, P.trends).then(function (b) {
                return [b, b];
            });
            return req.then(function (two) {
                var up = listOf(two[0], P.trends);
                var down = listOf(two[1], P.trends);
                if (!current()) {
                    return;
                }
                var info = two[0] && !Array.isArray(two[0]) ? two[0] : {};
                var overall = info.overall;
                renderTrends({
                    /* the API orders them (fastest first); without direction, split here */
                    rising: up.filter(function (x) {
                        return withDir || x.trend === "increasing";
                    }),
                    falling: down.filter(function (x) {
                        return withDir || x.trend === "decreasing";
                    }),
                    window: num(info.window_days) || 7,
                    overall: overall && typeof overall === "object" ? overall : null,
                    note: str(info.resolution_note, ""),
                    empty: overall && num(overall.recent_usage) === 0 && num(overall.previous_usage) === 0,
                });
            });
        });
    }

    var RECENT = ["recent_usage", "recent", "recent_count", "last_window", "current_count"];
    var PREVIOUS = ["previous_usage", "previous", "previous_count", "previous_window", "prev_count"];

    function trendCounts(it) {
        var recent = pick(it, RECENT);
        var previous = pick(it, PREVIOUS);
        if (recent === undefined && previous === undefined) {
            return null;
        }
        return h("span", { class: "counts", title: "uses in the last window vs the one before" }, " · " + fmtInt(recent) + " vs " + fmtInt(previous));
    }

    function trendItem(it, dir) {
        var pct = Math.abs(num(it.trend_percentage));
        var pctText = isNaN(pct) ? "—" : (dir > 0 ? "+" : "−") + fmtDec(pct) + " %";
        return h("li", { "data-pattern-id": str(it.pattern_id, "") },
            h("span", { class: "pct " + (dir > 0 ? "up" : "down") }, (dir > 0 ? "▲ " : "▼ ") + pctText), " ",
            patternLabel(it, true), trendCounts(it));
    }

    /* t: {rising, falling, window, overall, note, empty} */
    function renderTrends(t) {
        var p = panels.trends;
        var w = t.window;
        fill($(".window", p.root), "last " + w + " days vs the " + w + " before");
        fill($(".note", p.body), t.note || "");
        var o = t.overall;
        fill($(".overall", p.body), o ? ["All patterns: ", trendMark(o), trendCounts(o), " uses"] : "");
        fill($(".rising", p.body), t.rising.length ? t.rising.slice(0, 10).map(function (x) {
            return trendItem(x, 1);
        }) : h("li", { class: "none" }, "Nothing rising by more than 10 %."));
        fill($(".falling", p.body), t.falling.length ? t.falling.slice(0, 10).map(function (x) {
            return trendItem(x, -1);
        }) : h("li", { class: "none" }, "Nothing falling by more than 10 %."));
        if (t.empty) {
            p.message("empty", "No usage in the last " + 2 * w + " days, so there is no trend.");
        } else if (!t.rising.length && !t.falling.length) {
            p.show("empty", "No pattern is rising or falling by more than 10 % (a trend needs usage in both of the last two " + w + "-day windows).");
        } else {
            p.show("ok");
        }
    }

    /* ---- unused and stale */

    function loadPatternList(panel, path, render, emptyText) {
        panel.link(path);
        return panel.run(function (current) {
            return get(path).then(function (body) {
                var list = listOf(body, path);
                if (!current()) {
                    return;
                }
                if (list.length === 0) {
                    panel.message("empty", emptyText);
                    return;
                }
                fill($(".headline", panel.body), render.headline(list));
                fill($(".items", panel.body), list.slice(0, LIST_SHOWN).map(function (it) {
                    return h("li", { "data-pattern-id": str(it.pattern_id, "") }, patternLabel(it, true), " ", h("span", { class: "age" }, render.age(it)));
                }));
                fill($(".more", panel.body), list.length > LIST_SHOWN ? "… and " + fmtInt(list.length - LIST_SHOWN) + " more in the JSON." : "");
                panel.show("ok");
            });
        });
    }

    function loadUnused() {
        return loadPatternList(panels.unused, P.unused + "?min_age_days=" + UNUSED_DAYS, {
            headline: function (list) {
                return "⚠ " + plural(list.length, "unused pattern", "unused patterns") + " detected: consider reviewing or removing " + (list.length === 1 ? "it." : "them.");
            },
            age: function (it) {
                return "(" + plural(it.age_days, "day", "days") + " old)";
            },
        }, "No unused patterns: every pattern registered more than " + UNUSED_DAYS + " days ago has been used.");
    }

    function loadStale() {
        return loadPatternList(panels.stale, P.stale + "?days_inactive=" + STALE_DAYS, {
            headline: function (list) {
                return plural(list.length, "pattern", "patterns") + " not used for over " + STALE_DAYS + " days.";
            },
            age: function (it) {
                return "(last used " + fmtTime(it.last_used_at).replace(/ \d\d:\d\d UTC$/, "") + ", " + plural(it.days_since_last_use, "day", "days") + " ago; " + plural(it.usage_count, "use", "uses") + " in all)";
            },
        }, "No stale patterns: nothing used before has been idle for " + STALE_DAYS + " days.");
    }

    /* ---- dead letters (Prometheus text from /metrics) */

    function parseMetrics(text) {
        var out = [];
        text.split("\n").forEach(function (line) {
            if (line === "" || line.charAt(0) === "#") {
                return;
            }
            var m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
            if (!m) {
                return;
            }
            var labels = {};
            var re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
            var lm;
            while ((lm = re.exec(m[3] || "")) !== null) {
                labels[lm[1]] = lm[2].replace(/\\n/g, "\n").replace(/\\"/g, "\"").replace(/\\\\/g, "\\");
            }
            out.push({ name: m[1], labels: labels, value: Number(m[4]) });
        });
        return out;
    }

    /* Every dead letter kept (GET /api/dead-letters/summary: per reason and topic, all time),
     * and beside it what this engine process counted since it started (/metrics). */
    function loadDeadLetters(healthP) {
        var p = panels.deadletters;
        return p.run(function (current) {
            var metricsP = get("/metrics", { text: true }).catch(function () {
                return "";
            });
            return Promise.all([get("/api/dead-letters/summary"), metricsP, healthP]).then(function (r) {
                if (!current()) {
                    return;
                }
                var summary = r[0];
                var total = num(summary.total) || 0;
                var mine = 0;
                parseMetrics(r[1]).forEach(function (s) {
                    if (s.name === "patterntrack_dead_letters_total" && isFinite(s.value)) {
                        mine += s.value;
                    }
                });
                var v = $(".value", p.body);
                fill(v, fmtInt(total));
                v.className = "value" + (total > 0 ? " bad" : "");
                var health = r[2];
                var up = health && num(health.uptime_seconds);
                fill($(".note", p.body), "Kept in usage_dead_letters, all time; GET /api/dead-letters lists them with their payloads. " +
                    "This engine process counted " + fmtInt(mine) + (isNaN(up) || up === undefined ? "" : " in its " + fmtUptime(up)) + ".");
                var rows = (summary.by_topic_reason || []).slice().sort(function (a, b) {
                    return num(b.count) - num(a.count);
                });
                fill($("tbody", p.body), rows.map(function (x) {
                    return h("tr", null, h("td", null, x.reason), h("td", { class: "id" }, x.topic), h("td", { class: "num" }, fmtInt(num(x.count))),
                        h("td", { class: "when" }, "last " + fmtTime(x.last_at)));
                }));
                // copies of events counted before: not lost, not counted twice (the dedupe option)
                var dd = (health && health.ingest && health.ingest.dedupe) || [];
                fill($(".dups", p.body), dd.length === 0 ? "Event-ID deduplication is off." :
                    "Duplicates not counted again: " + dd.map(function (d) {
                        return d.topic + " " + fmtInt(num(d.duplicates)) + " (window " + fmtInt(num(d.window_s)) + " s)";
                    }).join(", ") + ". All time: usage_topic_stats.duplicates.");
                p.show("ok");
            });
        });
    }

    function fmtUptime(s) {
        if (s < 120) {
            return Math.round(s) + " s";
        }
        if (s < 7200) {
            return Math.round(s / 60) + " min";
        }
        if (s < 172800) {
            return decFmt.format(s / 3600) + " h";
        }
        return decFmt.format(s / 86400) + " days";
    }

    /* ---- engine health (header badge and banner) */

    function loadHealth() {
        var badge = $("#engine");
        return get("/health", { any: true }).then(function (r) {
            var hl = r.body || {};
            var pg = hl.postgresql || {};
            var kafka = hl.kafka || {};
            var bits = [];
            if (pg.reachable === false || r.status === 503) {
                state.dbDown = true;
                bits.push("PostgreSQL unreachable");
            } else {
                bits.push("PostgreSQL ok");
            }
            if (kafka.enabled === false) {
                bits.push("Kafka off");
            } else if (kafka.brokers_reachable === false) {
                bits.push("Kafka unreachable");
            } else if (kafka.enabled) {
                bits.push("Kafka ok");
            }
            var ok = r.status === 200 && hl.status === "ok";
            badge.setAttribute("data-state", ok ? "ok" : "degraded");
            var flush = hl.ingest && hl.ingest.last_flush_at;
            badge.setAttribute("title", "status " + str(hl.status, "?") + "; last flush " + fmtTime(flush) + "; version " + str(hl.version, "?"));
            fill(badge, "Engine " + (ok ? "ok" : str(hl.status, "HTTP " + r.status)) + " · " + bits.join(" · "));
            return hl;
        }, function (err) {
            if (err.kind === "network" || err.kind === "timeout") {
                state.unreachable = true;
            }
            badge.setAttribute("data-state", "down");
            fill(badge, err.kind === "network" ? "Engine unreachable" : "Engine: " + describe(err));
            return null;
        });
    }

    function updateBanner() {
        var b = $("#banner");
        if (state.unreachable) {
            fill(b, "The patterntrack engine cannot be reached. The panels show the last error; they fill in again by themselves once it answers.");
            b.hidden = false;
        } else if (state.dbDown) {
            fill(b, "Database unavailable: the engine is running but PostgreSQL cannot be reached, so no counts can be read. Counting resumes without loss when PostgreSQL is back (events are buffered or re-read).");
            b.hidden = false;
        } else {
            b.hidden = true;
        }
        b.setAttribute("data-kind", state.unreachable ? "unreachable" : state.dbDown ? "db" : "none");
    }

    /* ---- heatmap */

    var WEEK = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    var DOW_SUNDAY_FIRST = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

    /* -> {rows: [{day, counts[24]}] Monday first, tz, days} from the shapes an API may use:
     * {matrix: 7 x 24, day_names} (rows in day_names order, else Monday first), or cells
     * [{dow, hour, count}] with dow 0 = Sunday (PostgreSQL's dow), or 1..7 = Monday..Sunday. */
    function parseHeatmap(body, path) {
        var obj = body && typeof body === "object" && !Array.isArray(body) ? body : {};
        var out = { tz: str(pick(obj, ["tz", "timezone", "time_zone"]), "+00:00"), days: num(obj.days), rows: [] };
        var byDay = {};
        WEEK.forEach(function (d) {
            byDay[d] = new Array(24).fill(0);
        });
        var matrix = Array.isArray(body) && Array.isArray(body[0]) ? body : pick(obj, ["matrix", "grid", "counts"]);
        if (Array.isArray(matrix)) {
            var names = Array.isArray(obj.day_names) && obj.day_names.length === matrix.length ? obj.day_names : WEEK;
            if (matrix.length !== 7) {
                throw shapeError(path, "expected 7 rows of 24 hours");
            }
            matrix.forEach(function (row, i) {
                var day = canonicalDay(names[i]) || WEEK[i];
                for (var hr = 0; hr < 24; hr++) {
                    byDay[day][hr] = num(Array.isArray(row) ? row[hr] : NaN) || 0;
                }
            });
        } else {
            var cells = Array.isArray(body) ? body : pick(obj, ["cells", "items", "data", "buckets"]);
            if (!Array.isArray(cells)) {
                throw shapeError(path, "expected a 7 × 24 matrix or cells");
            }
            var DOW = ["dow", "day_of_week", "weekday", "isodow"];
            var iso = cells.some(function (c) {
                return num(pick(c, DOW)) === 7;
            });
            cells.forEach(function (c) {
                var dw = num(pick(c, DOW));
                var hr = num(pick(c, ["hour", "hour_of_day"]));
                var n = num(pick(c, ["count", "usage_count", "uses", "value"]));
                var day = iso ? WEEK[dw - 1] : DOW_SUNDAY_FIRST[dw];
                if (day && hr >= 0 && hr < 24 && !isNaN(n)) {
                    byDay[day][hr] += n;
                }
            });
        }
        out.rows = WEEK.map(function (d) {
            return { day: d, counts: byDay[d] };
        });
        out.notShown = num(obj.daily_usage_not_shown);
        out.note = str(obj.resolution_note, "");
        return out;
    }

    function canonicalDay(name) {
        var n = String(name || "").slice(0, 3).toLowerCase();
        for (var i = 0; i < WEEK.length; i++) {
            if (WEEK[i].slice(0, 3).toLowerCase() === n) {
                return WEEK[i];
            }
        }
        return null;
    }

    function tzLabel(tz) {
        return tz === "+00:00" || tz === "UTC" || tz === "Z" ? "UTC" : "UTC" + tz;
    }

    function browserOffset() {
        var m = -new Date().getTimezoneOffset();
        var a = Math.abs(m);
        return (m < 0 ? "-" : "+") + String(Math.floor(a / 60)).padStart(2, "0") + ":" + String(a % 60).padStart(2, "0");
    }

    var PATTERN_HEATMAP = "/api/patterns/usage/{pattern_id}/heatmap";

    function loadHeatmap() {
        var p = panels.heatmap;
        var scopeSel = $(".heat-scope", p.body);
        var tzSel = $(".heat-tz", p.body);
        var chosen = chosenPattern();
        /* the controls appear only for what the engine can do */
        $(".heat-scope-box", p.body).hidden = !(has(PATTERN_HEATMAP) && route(PATTERN_HEATMAP) !== null);
        $(".heat-tz-box", p.body).hidden = !(route(P.heatmap) && hasParam(P.heatmap, "tz"));
        var off = browserOffset();
        fill($("option[value=local]", tzSel), "Browser (" + tzLabel(off) + ")");
        var one = scopeSel.value === "chosen" && chosen !== null && has(PATTERN_HEATMAP);
        fill($("option[value=chosen]", scopeSel), chosen === null ? "Chosen pattern" : "Chosen pattern: " + truncate(chosen, 40));
        var path = one ? fillPath(PATTERN_HEATMAP, chosen) : P.heatmap;
        if (tzSel.value === "local" && !$(".heat-tz-box", p.body).hidden) {
            path += "?tz=" + enc(off);
        }
        p.link(path);
        return p.run(function (current) {
            return getOptional(one ? PATTERN_HEATMAP : P.heatmap, path).then(function (body) {
                var hm = parseHeatmap(body, path);
                if (!current()) {
                    return;
                }
                fill($(".tz", p.root), (one ? "of " + chosen + ", " : "") + "hour × weekday, " + tzLabel(hm.tz) + (hm.days > 0 ? ", last " + hm.days + " days" : ""));
                renderHeatmap(hm);
            });
        });
    }

    function renderHeatmap(hm) {
        var p = panels.heatmap;
        var max = 0;
        var total = 0;
        hm.rows.forEach(function (row) {
            row.counts.forEach(function (n) {
                max = Math.max(max, n);
                total += n;
            });
        });
        var tz = tzLabel(hm.tz);
        var kids = [h("span", { class: "lab" }, "")];
        for (var hh = 0; hh < 24; hh++) {
            kids.push(h("span", { class: "lab hour" }, hh % 3 === 0 ? String(hh) : ""));
        }
        hm.rows.forEach(function (row, ri) {
            kids.push(h("span", { class: "lab" }, row.day.slice(0, 3)));
            for (var hr = 0; hr < 24; hr++) {
                var n = row.counts[hr];
                var cell = h("span", {
                    class: "cell", "data-row": ri, "data-day": row.day, "data-hour": hr, "data-count": n,
                    title: row.day + " " + String(hr).padStart(2, "0") + ":00–" + String(hr + 1).padStart(2, "0") + ":00 " + tz + ": " + plural(n, "use", "uses"),
                });
                if (n > 0) {
                    cell.style.backgroundColor = "rgba(29, 78, 216, " + (0.12 + 0.88 * Math.sqrt(n / max)).toFixed(3) + ")";
                }
                kids.push(cell);
            }
        });
        fill($(".heatmap", p.body), kids);
        var notes = [plural(total, "use", "uses") + " in all; the darkest cell has " + fmtInt(max) + ". Hours in " + tz + "."];
        if (hm.notShown > 0) {
            notes.push(plural(hm.notShown, "older use is", "older uses are") + " kept per day only and not shown.");
        }
        if (hm.note) {
            notes.push(hm.note);
        }
        fill($(".note", p.body), notes.join(" "));
        if (total === 0) {
            p.show("empty", "No usage in this period, so the heatmap is empty.");
        } else {
            p.show("ok");
        }
    }

    /* ---- the chosen pattern: details and co-occurrence */

    function chosenPattern() {
        if (state.pattern) {
            return state.pattern;
        }
        return state.top && state.top.length ? str(state.top[0].pattern_id, null) : null;
    }

    function choosePattern(id) {
        state.pattern = id;
        var u = new URL(location.href);
        u.searchParams.set("pattern", id);
        history.replaceState(null, "", u.toString());
        $("#q").value = id;
        Array.prototype.forEach.call(document.querySelectorAll("#panel-top tbody tr"), function (tr) {
            tr.className = tr.getAttribute("data-pattern-id") === id ? "chosen" : "";
        });
        loadPattern();
        loadCooccurring();
        if ($("#panel-heatmap .heat-scope").value === "chosen") {
            loadHeatmap();
        }
        panels.pattern.root.scrollIntoView({ behavior: "smooth", block: "nearest" });
    }

    function matchesOf(q) {
        var ql = q.toLowerCase();
        return (state.top || []).filter(function (it) {
            return str(it.pattern_id, "").toLowerCase().indexOf(ql) >= 0 || str(it.pattern_name, "").toLowerCase().indexOf(ql) >= 0;
        }).slice(0, 10);
    }

    function loadPattern() {
        var p = panels.pattern;
        var id = chosenPattern();
        fill($(".chosen", p.root), id === null ? "" : id);
        if (id === null) {
            p.link(P.top + "?limit=1");
            p.message("empty", "No pattern to show yet: search for one by ID, or click one in Most used patterns.");
            return Promise.resolve();
        }
        var path = fillPath(P.pattern, id);
        p.link(path);
        return p.run(function (current) {
            return get(path).then(function (body) {
                var s = objectOf(body, path);
                if (!current()) {
                    return;
                }
                var agents = Array.isArray(s.used_by_agents) ? s.used_by_agents : [];
                var facts = [
                    ["ID", h("span", { class: "id", "data-field": "pattern_id" }, str(s.pattern_id, id))],
                    ["Name", str(s.pattern_name, "—")],
                    ["Type", str(s.pattern_type, "—")],
                    ["Uses", h("span", { "data-field": "usage_count" }, fmtInt(s.usage_count))],
                    ["7-day trend", trendMark(s)],
                    ["Agents", agents.length ? fmtInt(pick(s, ["agent_count"]) === undefined ? agents.length : s.agent_count) + ": " + agents.slice(0, 20).join(", ") + (agents.length > 20 ? ", …" : "") : "none"],
                    ["First used", fmtTime(s.first_used_at)],
                    ["Last used", fmtTime(s.last_used_at) + (num(s.days_since_last_use) >= 0 ? " (" + plural(s.days_since_last_use, "day", "days") + " ago)" : "")],
                ];
                if (s.registered === false) {
                    facts.push(["Catalog", "not registered (seen in events only)"]);
                }
                fill($(".facts", p.body), facts.map(function (f) {
                    return [h("dt", null, f[0]), h("dd", null, f[1])];
                }));
                p.show("ok", state.pattern ? null : "Showing the most used pattern. Search for another, or click one in Most used patterns.");
            }, function (err) {
                if (err.kind === "notfound" && current()) {
                    var m = matchesOf(id);
                    p.message("empty", ["No pattern has the ID “" + id + "”." + (m.length ? " Patterns among the most used that contain it:" : ""),
                        m.length ? h("span", { class: "matches" }, m.map(function (it) {
                            return [" ", h("button", {
                                type: "button", class: "link", "data-pattern-id": str(it.pattern_id, ""),
                                onclick: function () {
                                    choosePattern(str(it.pattern_id, ""));
                                },
                            }, str(it.pattern_id, ""))];
                        })) : null]);
                    return;
                }
                throw err;
            });
        });
    }

    function loadCooccurring() {
        var p = panels.cooccurring;
        var id = chosenPattern();
        fill($(".chosen", p.root), id === null ? "" : id);
        return p.run(function (current) {
            if (!has(P.cooc)) {
                p.link(P.cooc);
                throw new ApiError("missing", 404, "", P.cooc);
            }
            if (id === null) {
                p.link(P.cooc);
                p.message("empty", "Choose a pattern (search, or click one in Most used patterns) to see what is used with it.");
                return;
            }
            var path = fillPath(P.cooc, id) + "?limit=" + COOC_SHOWN;
            p.link(path);
            return get(path).then(function (body) {
                var list = listOf(body, path);
                if (!current()) {
                    return;
                }
                if (list.length === 0) {
                    p.message("empty", "“" + id + "” has not been used in the same event as any other pattern.");
                    return;
                }
                fill($("tbody", p.body), list.map(function (it) {
                    var other = { pattern_id: pick(it, ["pattern_id", "other_pattern_id", "pattern"]), pattern_name: it.pattern_name };
                    return h("tr", { "data-pattern-id": str(other.pattern_id, "") },
                        h("td", null, patternLabel(other, true)),
                        h("td", { class: "num" }, fmtInt(pick(it, ["count", "cooccurrence_count", "together"]))),
                        h("td", { class: "num" }, fmtRatio(it.lift)),
                        h("td", { class: "num" }, fmtRatio(it.jaccard)));
                }));
                var over = num(body && body.events_over_cooccurrence_limit);
                fill($(".note", p.body), "Together: events that used both. Lift above 1: used together more often than chance would give. Jaccard: the share of events using either that use both." +
                    (over > 0 ? " " + plural(over, "event", "events") + " referenced too many patterns to be paired and are left out." : ""));
                p.show("ok");
            }, function (err) {
                if (err.kind === "notfound" && current()) {
                    p.message("empty", "No pattern has the ID “" + id + "”.");
                    return;
                }
                throw err;
            });
        });
    }

    /* ---- agents */

    function loadAgents(topP) {
        var p = panels.agents;
        return p.run(function (current) {
            var listP;
            var note = "";
            if (has(P.agents)) {
                p.link(P.agents);
                listP = getOptional(P.agents, P.agents).then(function (b) {
                    var total = num(b && b.total);
                    var list = listOf(b, P.agents);
                    if (total > list.length) {
                        note = "The " + fmtInt(list.length) + " most active of " + fmtInt(total) + " agents.";
                    }
                    return list.map(function (a) {
                        return {
                            name: typeof a === "string" ? a : str(pick(a, ["agent_name", "name", "agent"]), "?"),
                            uses: typeof a === "string" ? undefined : pick(a, ["usage_count", "total_usage", "total", "uses", "count"]),
                            patterns: typeof a === "string" ? undefined : pick(a, ["pattern_count", "patterns", "distinct_patterns"]),
                        };
                    });
                });
            } else {
                /* Fallback: the agents named by the most used patterns. */
                p.link(P.top + "?limit=" + TOP_FETCHED);
                note = "This engine has no /api/agents: agents that used the " + TOP_FETCHED + " most used patterns; profiles from /by-agent.";
                listP = topP.then(function (list) {
                    if (!list) {
                        throw new ApiError(panels.top.root.getAttribute("data-state") === "db" ? "db" : "server", 0, "the most used patterns could not be read", P.top);
                    }
                    var seen = {};
                    list.forEach(function (it) {
                        (Array.isArray(it.used_by_agents) ? it.used_by_agents : []).forEach(function (a) {
                            seen[a] = (seen[a] || 0) + 1;
                        });
                    });
                    return Object.keys(seen).sort().map(function (a) {
                        return { name: a, uses: undefined, patterns: seen[a] };
                    });
                });
            }
            return listP.then(function (agents) {
                if (!current()) {
                    return;
                }
                if (agents.length === 0) {
                    p.message("empty", "No agent has used a pattern yet.");
                    return;
                }
                var names = agents.map(function (a) {
                    return a.name;
                });
                if (state.agent === null || names.indexOf(state.agent) < 0) {
                    state.agentShown = names[0];
                } else {
                    state.agentShown = state.agent;
                }
                fill($(".note", p.body), note);
                fill($(".agent-list tbody", p.body), agents.slice(0, 200).map(function (a) {
                    return h("tr", { class: a.name === state.agentShown ? "chosen" : null, "data-agent": a.name },
                        h("td", null, h("button", {
                            type: "button", class: "link",
                            onclick: function () {
                                chooseAgent(a.name);
                            },
                        }, a.name)),
                        h("td", { class: "num" }, fmtInt(a.uses)),
                        h("td", { class: "num" }, fmtInt(a.patterns)));
                }));
                p.show("ok");
                return loadProfile(state.agentShown);
            });
        });
    }

    function chooseAgent(name) {
        state.agent = name;
        state.agentShown = name;
        var u = new URL(location.href);
        u.searchParams.set("agent", name);
        history.replaceState(null, "", u.toString());
        Array.prototype.forEach.call(document.querySelectorAll("#panel-agents .agent-list tr[data-agent]"), function (tr) {
            tr.className = tr.getAttribute("data-agent") === name ? "chosen" : "";
        });
        loadProfile(name);
    }

    /* -> [{type, uses, share, last}] from /profile (several shapes) or from /by-agent. */
    function profileRows(body, path) {
        var list;
        if (Array.isArray(body)) {
            list = body;
        } else if (body && typeof body === "object") {
            list = pick(body, ["pattern_types", "by_pattern_type", "types", "profile", "preferences", "items"]);
            if (list && !Array.isArray(list) && typeof list === "object") {
                list = Object.keys(list).map(function (k) {
                    var v = list[k];
                    return typeof v === "object" ? Object.assign({ pattern_type: k }, v) : { pattern_type: k, usage_count: v };
                });
            }
        }
        if (!Array.isArray(list)) {
            throw shapeError(path, "expected usage per pattern_type");
        }
        return list.map(function (r) {
            return {
                type: str(pick(r, ["pattern_type", "type"]), "unknown"),
                uses: num(pick(r, ["usage_count", "uses", "count", "total"])) || 0,
                share: num(r.percentage),
                last: pick(r, ["last_used_at", "last_used"]),
            };
        });
    }

    function loadProfile(name) {
        var p = panels.agents;
        var box = $(".profile", p.body);
        fill($(".agent-name", box), name);
        var seq = (state.profileSeq = (state.profileSeq || 0) + 1);
        var path;
        var req;
        if (has(P.profile)) {
            path = fillPath(P.profile, name) + (hasParam(P.profile, "limit") ? "?limit=5" : "");
            req = get(path).then(function (b) {
                var rows = profileRows(b, path);
                rows.top = b && Array.isArray(b.top_patterns) ? b.top_patterns : [];
                return rows;
            });
        } else {
            path = fillPath(P.byAgent, name) + "?limit=200";
            req = get(path).then(function (b) {
                var sums = {};
                var lasts = {};
                listOf(b, path).forEach(function (it) {
                    var t = str(it.pattern_type, "unknown");
                    sums[t] = (sums[t] || 0) + (num(it.agent_usage_count) || 0);
                    if (it.agent_last_used_at && (!lasts[t] || it.agent_last_used_at > lasts[t])) {
                        lasts[t] = it.agent_last_used_at;
                    }
                });
                var rows = Object.keys(sums).map(function (t) {
                    return { type: t, uses: sums[t], last: lasts[t] };
                });
                rows.top = listOf(b, path).slice(0, 10).map(function (it) {
                    return { pattern_id: it.pattern_id, pattern_name: it.pattern_name, usage_count: it.agent_usage_count };
                });
                return rows;
            });
        }
        $(".profile-json", box).setAttribute("href", API + path.replace(/^\//, ""));
        return req.then(function (rows) {
            if (seq !== state.profileSeq) {
                return;
            }
            var top = rows.top || [];
            rows = rows.slice().sort(function (a, b) {
                return b.uses - a.uses;
            });
            var max = 0;
            var sum = 0;
            rows.forEach(function (r) {
                max = Math.max(max, r.uses);
                sum += r.uses;
            });
            fill($(".profile-msg", box), rows.length ? (has(P.profile) ? "" : "Uses by pattern type over this agent's 200 most used patterns.") : "This agent has no usage by pattern type yet.");
            $(".profile-msg", box).className = "profile-msg note";
            fill($(".bars", box), rows.map(function (r) {
                var bar = h("span", { class: "bar" });
                bar.style.width = (max > 0 ? Math.max(1, Math.round(r.uses / max * 100)) : 0) + "%";
                var share = isNaN(r.share) ? (sum > 0 ? r.uses / sum * 100 : NaN) : r.share;
                return h("li", { "data-pattern-type": r.type, title: r.last ? "last used " + fmtTime(r.last) : null },
                    h("span", { class: "ptype" }, r.type), h("span", null, bar),
                    h("span", null, h("span", { class: "num" }, fmtInt(r.uses)), " ", h("span", { class: "share" }, "(" + fmtPct(share) + ")")));
            }));
            fill($(".agent-top-title", box), top.length ? "Most used by " + name : "");
            fill($(".agent-top", box), top.slice(0, 5).map(function (it) {
                return h("li", { "data-pattern-id": str(it.pattern_id, "") }, patternLabel(it, true), h("span", { class: "age" }, " · " + plural(it.usage_count, "use", "uses")));
            }));
        }, function (err) {
            if (seq !== state.profileSeq) {
                return;
            }
            fill($(".bars", box));
            fill($(".agent-top", box));
            fill($(".agent-top-title", box));
            fill($(".profile-msg", box), describe(err));
            $(".profile-msg", box).className = "profile-msg msg " + (err.kind === "db" ? "db" : "error");
        });
    }

    /* ------------------------------------------------------------ the refresh cycle */

    function refresh() {
        if (state.running) {
            return state.running;
        }
        clearTimeout(state.timer);
        state.dbDown = false;
        state.unreachable = false;
        fill($("#status"), "Refreshing…");
        var needSpec = !state.openapi || Date.now() - state.openapiAt > 300000;
        state.running = (needSpec ? loadOpenapi() : Promise.resolve()).then(function () {
            var healthP = loadHealth();
            var topP = loadTop();
            return Promise.all([
                healthP, topP, loadSummary(), loadUnused(), loadStale(), loadHeatmap(),
                loadTrends(topP), loadDeadLetters(healthP), loadAgents(topP),
                topP.then(function () {
                    return Promise.all([loadPattern(), loadCooccurring()]);
                }),
            ]);
        }).catch(function (err) {
            if (window.console) {
                console.error(err);
            }
        }).then(function () {
            state.running = null;
            state.count += 1;
            updateBanner();
            var t = new Date();
            fill($("#status"), "Updated " + t.toLocaleTimeString() + (state.paused ? " · paused" : state.refresh > 0 ? " · every " + state.refresh + " s" : " · auto-refresh off"));
            document.body.setAttribute("data-refresh-count", String(state.count));
            document.body.setAttribute("data-state", "ready");
            schedule();
        });
        return state.running;
    }

    function schedule() {
        clearTimeout(state.timer);
        if (state.refresh > 0 && !state.paused) {
            state.timer = setTimeout(function () {
                if (document.hidden) {
                    state.pendingWhileHidden = true;
                } else {
                    refresh();
                }
            }, state.refresh * 1000);
        }
    }

    document.addEventListener("visibilitychange", function () {
        if (!document.hidden && state.pendingWhileHidden) {
            state.pendingWhileHidden = false;
            refresh();
        }
    });

    $("#pause").addEventListener("click", function () {
        state.paused = !state.paused;
        fill($("#pause"), state.paused ? "Resume" : "Pause");
        if (state.paused) {
            clearTimeout(state.timer);
            fill($("#status"), "Paused");
        } else {
            refresh();
        }
    });
    $("#panel-heatmap .heat-scope").addEventListener("change", loadHeatmap);
    $("#panel-heatmap .heat-tz").addEventListener("change", loadHeatmap);
    $("#refresh-now").addEventListener("click", function () {
        refresh();
    });
    $("#search").addEventListener("submit", function (e) {
        e.preventDefault();
        var v = $("#q").value.trim();
        if (v !== "") {
            choosePattern(v);
        }
    });
    if (state.refresh === 0) {
        fill($("#pause"), "Auto-refresh off");
        $("#pause").disabled = true;
    }
    if (state.pattern) {
        $("#q").value = state.pattern;
    }

    refresh();
})();
