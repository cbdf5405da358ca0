#include "routes.h"

#include <dirent.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "http.h"
#include "l_db.h"
#include "l_pt.h"
#include "log.h"
#include "metrics.h"
#include "static.h"
#include "text.h"

#define MAX_ROUTE_FILES 128

struct route_req {
    routes_t *r;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    lua_State *co;
    int co_ref;
    uint64_t id;
    void (*cancel)(void *);
    void *cancel_ud;
    struct timespec start;
    char method[8];
    bool replied; /* answered by routes_reply_early; the route goes on for the cache */
    route_req_t *prev, *next;
};

struct routes {
    struct event_base *base;
    const config_t *cfg;
    lvm_t *vm;
    pg_pool_t *pool;
    int dispatch_ref;
    int reqs_ref; /* registry table: thread -> lightuserdata route_req_t */
    uint64_t next_id;
    size_t in_flight;
    route_req_t *live;
};

static void step(route_req_t *rr, int nargs);

route_req_t *routes_current(routes_t *r, lua_State *co)
{
    lua_rawgeti(co, LUA_REGISTRYINDEX, r->reqs_ref);
    lua_pushthread(co);
    lua_rawget(co, -2);
    route_req_t *rr = lua_touserdata(co, -1);
    lua_pop(co, 2);
    return rr;
}

pg_pool_t *routes_pool(routes_t *r)
{
    return r->pool;
}

int64_t routes_query_timeout(routes_t *r)
{
    return r->cfg->query_timeout_ms;
}

void routes_set_pending(route_req_t *rr, void (*cancel)(void *), void *ud)
{
    rr->cancel = cancel;
    rr->cancel_ud = ud;
}

lua_State *routes_main_state(route_req_t *rr)
{
    return lvm_state(rr->r->vm);
}

lua_State *routes_thread(route_req_t *rr)
{
    return rr->co;
}

size_t routes_in_flight(const routes_t *r)
{
    return r->in_flight;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads lua/pt/router.lua and hands it every route file. */
static int load_router(routes_t *r, const routes_fn_t *extra, void *app, char *err, size_t errlen)
{
    lua_State *L = lvm_state(r->vm);
    char path[4096];
    config_path(r->cfg, "lua/pt/router.lua", path, sizeof path);
    size_t len;
    char *src = lvm_readfile(path, &len);
    if (src == NULL) {
        snprintf(err, errlen, "cannot read %s", path);
        return -1;
    }
    int rc = luaL_loadbufferx(L, src, len, "@lua/pt/router.lua", "t");
    free(src);
    if (rc != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        return -1;
    }
    lvm_push_sandbox(r->vm);
    l_pt_open(L);
    for (const routes_fn_t *f = extra; f && f->name; f++) {
        lua_pushlightuserdata(L, app);
        lua_pushcclosure(L, f->fn, 1);
        lua_setfield(L, -2, f->name);
    }
    l_db_open(L, r);
    /* the route files, sorted so that registration order does not depend on readdir */
    char dir[4096];
    config_path(r->cfg, "lua/routes", dir, sizeof dir);
    lua_newtable(L);
    DIR *d = opendir(dir);
    if (d != NULL) {
        char *names[MAX_ROUTE_FILES];
        size_t n = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL && n < MAX_ROUTE_FILES) {
            size_t l = strlen(e->d_name);
            if (l > 4 && strcmp(e->d_name + l - 4, ".lua") == 0 && e->d_name[0] != '.') {
                names[n++] = strdup(e->d_name);
            }
        }
        closedir(d);
        qsort(names, n, sizeof names[0], cmp_str);
        for (size_t i = 0; i < n; i++) {
            char full[4400], chunk[300];
            snprintf(full, sizeof full, "%s/%s", dir, names[i]);
            snprintf(chunk, sizeof chunk, "lua/routes/%s", names[i]);
            lua_createtable(L, 2, 0);
            lua_pushstring(L, full);
            lua_rawseti(L, -2, 1);
            lua_pushstring(L, chunk);
            lua_rawseti(L, -2, 2);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
            free(names[i]);
        }
    }
    /* router.lua(sandbox, pt, db, files) -> dispatch function */
    if (lvm_pcall(r->vm, 4, 1, 0) != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "lua/pt/router.lua must return the dispatch function");
        lua_pop(L, 1);
        return -1;
    }
    r->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

routes_t *routes_new(struct event_base *base, const config_t *c, pg_pool_t *pool,
                     const routes_fn_t *extra, void *app, char *err, size_t errlen)
{
    routes_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->base = base;
    r->cfg = c;
    r->pool = pool;
    r->vm = lvm_new(c->root, (size_t)c->lua_memory_mb << 20, err, errlen);
    if (r->vm == NULL) {
        goto fail;
    }
    lua_State *L = lvm_state(r->vm);
    lua_newtable(L);
    r->reqs_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (load_router(r, extra, app, err, errlen) != 0) {
        goto fail;
    }
    return r;
fail:
    routes_free(r);
    return NULL;
}

static void finish(route_req_t *rr);

void routes_free(routes_t *r)
{
    if (r == NULL) {
        return;
    }
    while (r->live) {
        route_req_t *rr = r->live;
        if (rr->cancel) {
            rr->cancel(rr->cancel_ud);
            rr->cancel = NULL;
        }
        if (rr->req) {
            http_reply_error(rr->req, 503, "shutting down", rr->id);
            rr->req = NULL;
        }
        finish(rr);
    }
    lvm_free(r->vm);
    free(r);
}

/* Strict percent-decoding (evhttp_uridecode passes a malformed %xx through as text): out gets
 * len + 1 bytes at most; plus: '+' is a space (in a query, not in a path). -1 on a '%' not
 * followed by two hex digits. */
static int pct_decode(const char *s, size_t len, bool plus, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%') {
            out[o++] = plus && s[i] == '+' ? ' ' : s[i];
            continue;
        }
        if (i + 2 >= len) {
            return -1;
        }
        int hi = text_hex_digit(s[i + 1]), lo = text_hex_digit(s[i + 2]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

/* Decodes s[0..len) into a new string (free it) of UTF-8 without NUL; NULL when it is not. */
static char *query_decode(const char *s, size_t len, size_t *outlen)
{
    char *dec = malloc(len + 1);
    if (dec != NULL && (pct_decode(s, len, true, dec, outlen) != 0 ||
                        !text_utf8_valid(dec, *outlen) || memchr(dec, '\0', *outlen))) {
        free(dec);
        dec = NULL;
    }
    return dec;
}

/* Adds the parameters of a query string to the table on top: [-0, +0]. Names and values are
 * percent-decoded, '+' a space; a parameter without '=' has the value "", one with an empty
 * name is skipped (neither is malformed: FastAPI reads them so), and the last of a repeated
 * name wins. False on a bad escape, text that is not UTF-8, or a NUL. (evhttp_parse_query_str
 * refuses empty names, CR/LF in values, and leaves names encoded.) */
static bool add_query(lua_State *L, const char *query)
{
    const char *p = query;
    while (*p) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        size_t klen = eq ? (size_t)(eq - p) : len;
        size_t kdl = 0, vdl = 0;
        char *key = query_decode(p, klen, &kdl);
        char *val = eq ? query_decode(eq + 1, len - klen - 1, &vdl) : strdup("");
        if (key == NULL || val == NULL) {
            free(key);
            free(val);
            return false;
        }
        if (kdl > 0) {
            lua_pushlstring(L, key, kdl);
            lua_pushlstring(L, val, vdl);
            lua_rawset(L, -3);
        }
        free(key);
        free(val);
        p += len;
        if (*p == '&') {
            p++;
        }
    }
    return true;
}

int routes_set_target(lua_State *L, const char *path, const char *query)
{
    /* segments, each percent-decoded and checked */
    lua_newtable(L);
    lua_Integer nseg = 0;
    const char *p = path + 1;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len > 0 || slash) {
            size_t dlen = 0;
            char *dec = malloc(len + 1);
            if (dec != NULL && pct_decode(p, len, false, dec, &dlen) != 0) {
                free(dec);
                dec = NULL;
            }
            if (dec == NULL || !text_utf8_valid(dec, dlen) || memchr(dec, '\0', dlen)) {
                free(dec);
                lua_pop(L, 1);
                return 400;
            }
            if (len > 0) {
                lua_pushlstring(L, dec, dlen);
                lua_rawseti(L, -2, ++nseg);
            }
            free(dec);
        }
        if (!slash) {
            break;
        }
        p = slash + 1;
    }
    lua_setfield(L, -2, "segments");
    lua_newtable(L);
    if (query && !add_query(L, query)) {
        lua_pop(L, 1);
        return 400;
    }
    lua_setfield(L, -2, "query");
    return 0;
}

/* Pushes {method, path, segments, query, body, headers, id}: [-0, +1]. 0, or an HTTP status
 * for a request that cannot be represented (bad encoding). */
static int push_request(lua_State *L, route_req_t *rr)
{
    struct evhttp_request *req = rr->req;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    if (path == NULL || path[0] != '/') {
        return 400;
    }
    lua_createtable(L, 0, 8);
    lua_pushstring(L, rr->method);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "raw_path");
    lua_pushinteger(L, (lua_Integer)rr->id);
    lua_setfield(L, -2, "id");
    if (routes_set_target(L, path, query) != 0) {
        lua_pop(L, 1);
        return 400;
    }
    lua_newtable(L);
    struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
    for (struct evkeyval *e = hdrs->tqh_first; e; e = e->next.tqe_next) {
        char name[128];
        size_t i = 0;
        for (; e->key[i] && i < sizeof name - 1; i++) {
            char ch = e->key[i];
            name[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        name[i] = '\0';
        lua_pushstring(L, e->value);
        lua_setfield(L, -2, name);
    }
    lua_setfield(L, -2, "headers");
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(body);
    const char *bdata = blen ? (const char *)evbuffer_pullup(body, -1) : "";
    lua_pushlstring(L, bdata, blen);
    lua_setfield(L, -2, "body");
    return 0;
}

/* lua_CFunctions run under lua_pcall on the VM's main state: a memory error raised in the
 * request's coroutine is re-thrown there (Lua 5.4's luaD_throw for a thread without a handler). */
static int new_request_thread(lua_State *L)
{
    route_req_t *rr = lua_touserdata(L, 1);
    routes_t *r = rr->r;
    rr->co = lua_newthread(L);
    rr->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->reqs_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, rr->co_ref);
    lua_pushlightuserdata(L, rr);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 0;
}

/* [dispatch, request] onto the coroutine; returns push_request's status. */
static int push_request_protected(lua_State *L)
{
    route_req_t *rr = lua_touserdata(L, 1);
    lua_rawgeti(rr->co, LUA_REGISTRYINDEX, rr->r->dispatch_ref);
    lua_pushinteger(L, push_request(rr->co, rr));
    return 1;
}

/* The request's path for its log lines; NULL once it has been answered. */
static const char *req_path(const route_req_t *rr)
{
    const struct evhttp_uri *uri = rr->req ? evhttp_request_get_evhttp_uri(rr->req) : NULL;
    return uri ? evhttp_uri_get_path(uri) : NULL;
}

static void close_cb(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    route_req_t *rr = arg;
    if (log_get_level() <= LOG_DEBUG) {
        log_fields(LOG_DEBUG,
                   LOG_F(LF_UINT("request_id", rr->id), LF_STR("method", rr->method),
                         LF_STR("path", req_path(rr))),
                   "http request: client went away");
    }
    if (rr->cancel) {
        rr->cancel(rr->cancel_ud);
        rr->cancel = NULL;
    }
    rr->evcon = NULL;
    /* The request was detached from its connection; replying frees it. */
    if (rr->req) {
        evhttp_send_error(rr->req, 500, NULL);
        rr->req = NULL;
    }
    finish(rr);
}

static void finish(route_req_t *rr)
{
    routes_t *r = rr->r;
    lua_State *L = lvm_state(r->vm);
    if (rr->evcon) {
        evhttp_connection_set_closecb(rr->evcon, NULL, NULL);
    }
    if (rr->co) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->reqs_ref);
        lua_pushthread(rr->co);
        lua_xmove(rr->co, L, 1);
        lua_pushnil(L);
        lua_rawset(L, -3);
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, rr->co_ref);
    }
    if (rr->prev) {
        rr->prev->next = rr->next;
    } else {
        r->live = rr->next;
    }
    if (rr->next) {
        rr->next->prev = rr->prev;
    }
    r->in_flight--;
    free(rr);
}

static void observe(route_req_t *rr, int status, const char *route)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs =
        (double)(now.tv_sec - rr->start.tv_sec) + (double)(now.tv_nsec - rr->start.tv_nsec) / 1e9;
    char lm[64], lr[300], labels[512];
    metrics_label(lm, sizeof lm, "method", rr->method);
    metrics_label(lr, sizeof lr, "route", route);
    snprintf(labels, sizeof labels, "%s,%s,status=\"%d\"", lm, lr, status);
    metric_add(metrics_series("patterntrack_http_requests_total", METRIC_COUNTER,
                              "HTTP requests by method, route and status.", labels),
               1);
    metric_observe(metrics_series("patterntrack_http_request_duration_seconds", METRIC_HISTOGRAM,
                                  "HTTP request latency by route.", lr),
                   secs);
}

/* Sends the reply and detaches the request from its connection; the coroutine runs on until it
 * ends, and what it returns then is not sent. */
void routes_reply_early(route_req_t *rr, int status, const char *ctype, const char *body,
                        size_t len, const char *route)
{
    if (rr->replied) {
        return;
    }
    rr->replied = true;
    observe(rr, status, route);
    if (rr->evcon) {
        evhttp_connection_set_closecb(rr->evcon, NULL, NULL);
        rr->evcon = NULL;
    }
    if (rr->req) {
        http_reply(rr->req, status, ctype, body, len);
        rr->req = NULL;
    }
}

static void reply_and_finish(route_req_t *rr, int status, const char *ctype, const char *body,
                             size_t len, const char *route)
{
    routes_reply_early(rr, status, ctype, body, len, route); /* nothing when replied early */
    finish(rr);
}

static void fail_request(route_req_t *rr, const char *why)
{
    log_fields(LOG_ERROR,
               LOG_F(LF_UINT("request_id", rr->id), LF_STR("method", rr->method),
                     LF_STR("path", req_path(rr))),
               "http request failed%s: %s",
               rr->replied ? " (already answered from the cache, while refreshing it)" : "", why);
    if (!rr->replied) {
        observe(rr, 500, "error");
    }
    if (rr->evcon) {
        evhttp_connection_set_closecb(rr->evcon, NULL, NULL);
        rr->evcon = NULL;
    }
    if (rr->req) {
        http_reply_error(rr->req, 500, "Internal Server Error", rr->id);
        rr->req = NULL;
    }
    finish(rr);
}

/* Runs the coroutine until it yields for I/O or ends. The dispatch function's contract: it
 * returns status (integer), body (string), content type (string or nil) and the route's path
 * pattern (for metrics); a yield must leave a pending operation (routes_set_pending). */
static void step(route_req_t *rr, int nargs)
{
    routes_t *r = rr->r;
    int nres = 0;
    int rc = lvm_resume(r->vm, rr->co, nargs, &nres, r->cfg->route_instruction_budget);
    if (rc == LUA_YIELD) {
        lua_pop(rr->co, nres);
        if (rr->cancel == NULL) {
            fail_request(rr, "the route yielded without waiting for anything");
        }
        return;
    }
    if (rc != LUA_OK) {
        fail_request(rr, lua_tostring(rr->co, -1));
        return;
    }
    int base = lua_gettop(rr->co) - nres;
    if (nres < 2 || !lua_isinteger(rr->co, base + 1) || !lua_isstring(rr->co, base + 2)) {
        fail_request(rr, "router returned no status and body");
        return;
    }
    int status = (int)lua_tointeger(rr->co, base + 1);
    size_t len;
    const char *body = lua_tolstring(rr->co, base + 2, &len);
    const char *ctype = nres >= 3 ? lua_tostring(rr->co, base + 3) : NULL;
    const char *route =
        nres >= 4 && lua_isstring(rr->co, base + 4) ? lua_tostring(rr->co, base + 4) : "unmatched";
    if (status < 100 || status > 599) {
        fail_request(rr, "router returned an invalid status");
        return;
    }
    /* body and strings stay valid: the coroutine keeps them until finish unrefs it */
    reply_and_finish(rr, status, ctype, body, len, route);
}

void routes_resume(route_req_t *rr, int nargs)
{
    step(rr, nargs);
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    default:
        return "OTHER";
    }
}

/* The bearer token, before any Lua runs: true when the request may go on; otherwise it has
 * been answered 401 (with the challenge RFC 6750 asks for) and finished. The token is this
 * generation's, so a reload that changes it applies to the next request. */
static bool authorized(route_req_t *rr)
{
    const config_t *c = rr->r->cfg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(rr->req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(rr->req);
    bool read = m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
    if (!auth_required(c->http_token, c->http_token_reads, read, path ? path : "")) {
        return true;
    }
    const char *hdr =
        evhttp_find_header(evhttp_request_get_input_headers(rr->req), "Authorization");
    auth_result_t a = auth_check(c->http_token, hdr);
    if (a == AUTH_OK) {
        return true;
    }
    evhttp_add_header(evhttp_request_get_output_headers(rr->req), "WWW-Authenticate",
                      a == AUTH_MISSING ? "Bearer realm=\"patterntrack\""
                                        : "Bearer realm=\"patterntrack\", error=\"invalid_token\"");
    static const char missing[] =
        "{\"detail\":\"this request needs the bearer token (Authorization: Bearer TOKEN)\"}";
    static const char invalid[] = "{\"detail\":\"invalid bearer token\"}";
    if (a == AUTH_MISSING) {
        reply_and_finish(rr, 401, NULL, missing, sizeof missing - 1, "unauthorized");
        return false;
    }
    /* A wrong token is worth a line, but a client that keeps guessing must not flood the log:
     * one line a second at most, saying how many were left out. */
    static time_t last;
    static unsigned long skipped;
    time_t now = time(NULL);
    if (now != last) {
        log_fields(LOG_INFO,
                   LOG_F(LF_UINT("request_id", rr->id), LF_STR("method", rr->method),
                         LF_STR("path", path), LF_UINT("skipped", skipped)),
                   "http request with an invalid bearer token (skipped: such requests since the "
                   "last such line)");
        last = now;
        skipped = 0;
    } else {
        skipped++;
    }
    reply_and_finish(rr, 401, NULL, invalid, sizeof invalid - 1, "unauthorized");
    return false;
}

void routes_handle(struct evhttp_request *req, void *ud)
{
    routes_t *r = ud;
    char web[4096];
    if (http_refuse_unread_body(req)) {
        return;
    }
    if (static_handle(req, config_path(r->cfg, "web", web, sizeof web))) {
        return;
    }
    route_req_t *rr = calloc(1, sizeof *rr);
    if (rr == NULL) {
        evhttp_send_error(req, 503, "Service Unavailable");
        return;
    }
    rr->r = r;
    rr->req = req;
    rr->id = ++r->next_id;
    rr->co_ref = LUA_NOREF;
    clock_gettime(CLOCK_MONOTONIC, &rr->start);
    snprintf(rr->method, sizeof rr->method, "%s", method_name(evhttp_request_get_command(req)));
    rr->next = r->live;
    if (r->live) {
        r->live->prev = rr;
    }
    r->live = rr;
    r->in_flight++;
    lua_State *L = lvm_state(r->vm);
    /* Allocations here can fail at lua_memory_mb: in a protected call, a memory error is a 503
     * for this request instead of Lua's panic (abort) for the whole engine. */
    lua_pushcfunction(L, new_request_thread);
    lua_pushlightuserdata(L, rr);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        log_fields(LOG_WARN,
                   LOG_F(LF_UINT("request_id", rr->id), LF_STR("method", rr->method),
                         LF_STR("path", req_path(rr))),
                   "http request refused: %s",
                   lua_isstring(L, -1) ? lua_tostring(L, -1) : "Lua error");
        lua_pop(L, 1);
        if (rr->co_ref != LUA_NOREF) {
            luaL_unref(L, LUA_REGISTRYINDEX, rr->co_ref); /* frees a slot: allocates nothing */
        }
        rr->co = NULL;
        evhttp_send_error(req, 503, "Service Unavailable");
        rr->req = NULL;
        finish(rr);
        return;
    }
    rr->evcon = evhttp_request_get_connection(req);
    if (rr->evcon) {
        evhttp_connection_set_closecb(rr->evcon, close_cb, rr);
    }
    if (!authorized(rr)) {
        return;
    }
    lua_pushcfunction(L, push_request_protected);
    lua_pushlightuserdata(L, rr);
    int bad = 0;
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        log_fields(LOG_WARN,
                   LOG_F(LF_UINT("request_id", rr->id), LF_STR("method", rr->method),
                         LF_STR("path", req_path(rr))),
                   "http request refused: %s",
                   lua_isstring(L, -1) ? lua_tostring(L, -1) : "Lua error");
        bad = 503;
    } else {
        bad = (int)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    if (bad == 503) {
        lua_settop(rr->co, 0);
        char msg[] = "{\"detail\":\"the HTTP Lua state is out of memory (lua_memory_mb)\"}";
        reply_and_finish(rr, 503, NULL, msg, sizeof msg - 1, "unmatched");
        return;
    }
    if (bad) {
        lua_settop(rr->co, 0);
        char msg[] =
            "{\"detail\":\"malformed request path or query (bad percent-encoding, not UTF-8, or a "
            "NUL byte)\"}";
        reply_and_finish(rr, bad, NULL, msg, sizeof msg - 1, "unmatched");
        return;
    }
    step(rr, 1);
}
