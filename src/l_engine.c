#include "l_engine.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "l_pt.h"
#include "metrics.h"
#include "text.h"

#ifndef PT_VERSION
#define PT_VERSION "0.0.0"
#endif

static void set_int(lua_State *L, const char *k, long long v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void set_bool(lua_State *L, const char *k, bool v)
{
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v) {
        lua_pushstring(L, v);
    } else {
        lua_pushlightuserdata(L, NULL);
    }
    lua_setfield(L, -2, k);
}

static void file_cb(const char *path, const char *hash, void *ud)
{
    lua_State *L = ud;
    lua_pushstring(L, hash);
    lua_setfield(L, -2, path);
}

/* pt.health() -> table describing Kafka, the flush and the buffer: [-0, +1] */
static int l_engine_health(lua_State *L)
{
    app_t *app = lua_touserdata(L, lua_upvalueindex(1));
    lua_newtable(L);
    set_str(L, "version", PT_VERSION);
    set_int(L, "uptime_seconds", (long long)(time(NULL) - app->started));
    set_bool(L, "stopping", app->stopping);

    lua_newtable(L);
    set_bool(L, "enabled", app->kafka != NULL);
    if (app->kafka) {
        set_bool(L, "brokers_reachable", !kafka_brokers_down(app->kafka));
        set_bool(L, "paused", kafka_paused(app->kafka));
        set_int(L, "rebalances", (long long)kafka_rebalances(app->kafka));
        set_int(L, "fetch_wakeups", (long long)kafka_fetch_wakeups(app->kafka));
        long long lag = 0;
        lua_newtable(L);
        l_pt_mark_array(L, -1);
        for (size_t i = 0; i < kafka_n_parts(app->kafka); i++) {
            kafka_part_info_t pi;
            if (!kafka_part_info(app->kafka, i, &pi)) {
                continue;
            }
            lua_newtable(L);
            set_str(L, "topic", pi.topic);
            set_int(L, "partition", pi.partition);
            set_int(L, "next_offset", pi.next);
            set_int(L, "high_watermark", pi.high);
            long long l = (pi.high >= 0 && pi.next >= 0) ? pi.high - pi.next : -1;
            set_int(L, "lag", l);
            if (l > 0) {
                lag += l;
            }
            set_bool(L, "active", pi.active);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "partitions");
        set_int(L, "lag", lag);
    }
    lua_setfield(L, -2, "kafka");

    lua_newtable(L);
    if (app->ingest) {
        set_bool(L, "postgresql_reachable", !ingest_pg_down(app->ingest));
        set_int(L, "flushes_ok", (long long)ingest_flushes_ok(app->ingest));
        set_int(L, "flushes_failed", (long long)ingest_flushes_failed(app->ingest));
        set_int(L, "buffer_bytes", (long long)ingest_buffer_bytes(app->ingest));
        int64_t last = ingest_last_flush_us(app->ingest);
        if (last > 0) {
            char buf[40];
            text_format_time(last, buf, sizeof buf);
            set_str(L, "last_flush_at", buf);
        } else {
            set_str(L, "last_flush_at", NULL);
        }
        /* event-ID deduplication: each deduplicated topic, its window and the copies not
         * counted since start (usage_topic_stats.duplicates has them all) */
        lua_newtable(L);
        l_pt_mark_array(L, -1);
        for (size_t i = 0; i < app->cfg->n_dedupe; i++) {
            const config_dedupe_t *d = &app->cfg->dedupe[i];
            int idx = rules_find(app->rules, d->topic);
            lua_newtable(L);
            set_str(L, "topic", d->topic);
            set_int(L, "window_s", (long long)d->window_s);
            set_int(L, "duplicates",
                    idx >= 0 ? (long long)ingest_stats(app->ingest, (size_t)idx)->duplicates : 0);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "dedupe");
        set_int(L, "expired_claims_deleted", (long long)upkeep_pruned_claims(app->upkeep));
    }
    lua_setfield(L, -2, "ingest");

    /* the dead letters kept (counted every few seconds by upkeep) and their retention */
    const upkeep_dead_t *dl = upkeep_dead_letters(app->upkeep);
    if (dl != NULL) {
        lua_newtable(L);
        if (dl->counted) {
            set_int(L, "rows", dl->rows);
        } else {
            set_str(L, "rows", NULL); /* not counted yet */
        }
        if (dl->oldest >= 0) {
            char buf[40];
            text_format_time((int64_t)(dl->oldest * 1e6), buf, sizeof buf);
            set_str(L, "oldest_at", buf);
        } else {
            set_str(L, "oldest_at", NULL);
        }
        set_int(L, "retention_days", (long long)app->cfg->dead_letter_retention_days);
        set_int(L, "payload_max", (long long)app->cfg->dead_letter_payload_max);
        set_int(L, "pruned", (long long)dl->pruned);
        lua_setfield(L, -2, "dead_letters");
    }

    if (app->reload) {
        const reload_status_t *rs = reload_status(app->reload);
        lua_newtable(L);
        set_int(L, "reloads_ok", (long long)rs->ok);
        set_int(L, "reloads_failed", (long long)rs->failed);
        set_bool(L, "last_ok", rs->last_ok);
        set_str(L, "last_result", rs->last_message);
        if (rs->last_at_us > 0) {
            char buf[40];
            text_format_time(rs->last_at_us, buf, sizeof buf);
            set_str(L, "last_at", buf);
        }
        set_str(L, "fingerprint", rs->fingerprint);
        lua_newtable(L);
        reload_each_file(app->reload, file_cb, L);
        lua_setfield(L, -2, "files");
        lua_setfield(L, -2, "loaded");
    }
    return 1;
}

/* pt.metrics() -> the Prometheus text exposition: [-0, +1] */
static int l_engine_metrics(lua_State *L)
{
    pg_buf_t b;
    pg_buf_init(&b);
    metrics_render(&b);
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    pg_buf_free(&b);
    return 1;
}

/* ---- pt.ingest ---- */

typedef struct {
    app_t *app;
    route_req_t *rr;
    ingest_waiter_t *w;
    size_t topic_idx;
    long long accepted, dead, uses;
} ingest_wait_t;

static void push_ingest_result(lua_State *co, ingest_wait_t *iw, const char *topic)
{
    lua_createtable(co, 0, 4);
    lua_pushstring(co, topic);
    lua_setfield(co, -2, "topic");
    lua_pushinteger(co, iw->accepted);
    lua_setfield(co, -2, "accepted");
    lua_pushinteger(co, iw->dead);
    lua_setfield(co, -2, "dead_lettered");
    lua_pushinteger(co, iw->uses);
    lua_setfield(co, -2, "patterns_counted");
}

static void ingest_done_cb(bool ok, const char *why, void *ud)
{
    ingest_wait_t *iw = ud;
    route_req_t *rr = iw->rr;
    lua_State *co = routes_thread(rr);
    routes_set_pending(rr, NULL, NULL);
    if (ok) {
        lua_pushboolean(co, 1);
        push_ingest_result(co, iw, rules_topic(iw->app->rules, iw->topic_idx));
    } else {
        lua_pushboolean(co, 0);
        lua_createtable(co, 0, 2);
        lua_pushinteger(co, 503);
        lua_setfield(co, -2, "status");
        lua_pushstring(co, why ? why : "not stored");
        lua_setfield(co, -2, "detail");
    }
    free(iw);
    routes_resume(rr, 2);
}

static void ingest_cancel(void *ud)
{
    ingest_wait_t *iw = ud;
    ingest_unwait(iw->app->ingest, iw->w);
    free(iw);
}

static int l_engine_ingest_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    if (!lua_toboolean(L, -2)) {
        return lua_error(L);
    }
    return 1;
}

/* pt.ingest(topic, body, format) -> {topic, accepted, dead_lettered, patterns_counted} once the
 * batch holding the events committed; nil, message for an unknown topic. format: "json" (one
 * object or an array of them, already validated) or "ndjson". Suspends the route. */
static int l_engine_ingest(lua_State *L)
{
    app_t *app = lua_touserdata(L, lua_upvalueindex(1));
    const char *topic = luaL_checkstring(L, 1);
    size_t len;
    const char *body = luaL_checklstring(L, 2, &len);
    const char *format = luaL_optstring(L, 3, "json");
    route_req_t *rr = app->routes ? routes_current(app->routes, L) : NULL;
    if (rr == NULL) {
        return luaL_error(L, "pt.ingest can only be called while handling a request");
    }
    if (app->ingest == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, "ingest is not running");
        return 2;
    }
    int idx = rules_find(app->rules, topic);
    if (idx < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "unknown topic '%s' (no rule is configured for it)", topic);
        return 2;
    }
    ingest_wait_t *iw = calloc(1, sizeof *iw);
    if (iw == NULL) {
        return luaL_error(L, "out of memory");
    }
    iw->app = app;
    iw->rr = rr;
    iw->topic_idx = (size_t)idx;
    const ingest_topic_stats_t *st = ingest_stats(app->ingest, (size_t)idx);
    uint64_t ev0 = st->events, dl0 = st->dead_letters, u0 = st->uses;
    ingest_body(app->ingest, (size_t)idx, topic, body, len,
                strcmp(format, "ndjson") == 0 ? INGEST_NDJSON : INGEST_JSON);
    iw->accepted = (long long)(st->events - ev0);
    iw->dead = (long long)(st->dead_letters - dl0);
    iw->uses = (long long)(st->uses - u0);
    if (iw->accepted == 0) {
        push_ingest_result(L, iw, topic);
        free(iw);
        return 1;
    }
    iw->w = ingest_wait(app->ingest, ingest_done_cb, iw);
    if (iw->w == NULL) {
        free(iw);
        return luaL_error(L, "out of memory");
    }
    routes_set_pending(rr, ingest_cancel, iw);
    ingest_poke(app->ingest);
    return lua_yieldk(L, 0, 0, l_engine_ingest_k);
}

/* pt.reload() -> {ok, message, fingerprint}: reloads now and answers with the result. */
static int l_engine_reload(lua_State *L)
{
    app_t *app = lua_touserdata(L, lua_upvalueindex(1));
    char msg[1024];
    int rc = reload_now(app->reload, msg, sizeof msg);
    lua_newtable(L);
    set_bool(L, "ok", rc == 0);
    set_str(L, "message", msg);
    set_str(L, "fingerprint", reload_status(app->reload)->fingerprint);
    return 1;
}

/* pt.data_version() -> all, written: integers. all changes whenever this engine committed data
 * (a flush, a catalog change, a rollup of hourly buckets); written only when a client of this
 * engine may expect to read back what it wrote (a catalog change, a flush of HTTP-ingested
 * events answered "stored", a rollup), not for Kafka flushes. [-0, +2] */
static int l_engine_data_version(lua_State *L)
{
    app_t *app = lua_touserdata(L, lua_upvalueindex(1));
    uint64_t w = app->data_changes + upkeep_rollups(app->upkeep) +
                 (app->ingest ? ingest_flushes_waited(app->ingest) : 0);
    uint64_t v = w + (app->ingest ? ingest_flushes_ok(app->ingest) : 0);
    lua_pushinteger(L, (lua_Integer)v);
    lua_pushinteger(L, (lua_Integer)w);
    return 2;
}

/* pt.reply_early(status, body [, content_type [, route]]): answers the current request now;
 * the route goes on (to refresh a cached answer) and what it returns is not sent. [-0, +0] */
static int l_engine_reply_early(lua_State *L)
{
    app_t *app = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer status = luaL_checkinteger(L, 1);
    size_t len;
    const char *body = luaL_checklstring(L, 2, &len);
    const char *ctype = luaL_optstring(L, 3, NULL);
    const char *route = luaL_optstring(L, 4, "unmatched");
    luaL_argcheck(L, status >= 100 && status <= 599, 1, "not an HTTP status");
    route_req_t *rr = app->routes ? routes_current(app->routes, L) : NULL;
    if (rr == NULL) {
        return luaL_error(L, "pt.reply_early can only be called while handling a request");
    }
    routes_reply_early(rr, (int)status, ctype, body, len, route);
    return 0;
}

/* pt.data_changed(): a route wrote data (catalog). [-0, +0] */
static int l_engine_data_changed(lua_State *L)
{
    app_t *app = lua_touserdata(L, lua_upvalueindex(1));
    app->data_changes++;
    return 0;
}

/* pt.lifetime_days() -> {default = n, by_type = {type = n, ...}} from the config. [-0, +1] */
static int l_engine_lifetime_days(lua_State *L)
{
    app_t *app = lua_touserdata(L, lua_upvalueindex(1));
    lua_newtable(L);
    set_int(L, "default", (long long)app->cfg->lifetime_default_days);
    lua_newtable(L);
    for (size_t i = 0; i < app->cfg->n_lifetimes; i++) {
        lua_pushinteger(L, atoll(app->cfg->lifetimes[i].value));
        lua_setfield(L, -2, app->cfg->lifetimes[i].key);
    }
    lua_setfield(L, -2, "by_type");
    return 1;
}

/* pt.topics() -> array of configured topic names: [-0, +1] */
static int l_engine_topics(lua_State *L)
{
    app_t *app = lua_touserdata(L, lua_upvalueindex(1));
    lua_newtable(L);
    l_pt_mark_array(L, -1);
    for (size_t i = 0; i < rules_count(app->rules); i++) {
        lua_pushstring(L, rules_topic(app->rules, i));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

const routes_fn_t l_engine_fns[] = {{"health", l_engine_health},
                                    {"metrics", l_engine_metrics},
                                    {"ingest", l_engine_ingest},
                                    {"topics", l_engine_topics},
                                    {"reload", l_engine_reload},
                                    {"data_version", l_engine_data_version},
                                    {"data_changed", l_engine_data_changed},
                                    {"reply_early", l_engine_reply_early},
                                    {"lifetime_days", l_engine_lifetime_days},
                                    {NULL, NULL}};

void l_engine_collect(void *ud)
{
    app_t *app = ud;
    if (app->kafka) {
        for (size_t i = 0; i < kafka_n_parts(app->kafka); i++) {
            kafka_part_info_t pi;
            if (!kafka_part_info(app->kafka, i, &pi) || pi.high < 0 || pi.next < 0) {
                continue;
            }
            char lt[300], labels[400];
            metrics_label(lt, sizeof lt, "topic", pi.topic);
            snprintf(labels, sizeof labels, "%s,partition=\"%d\"", lt, pi.partition);
            metric_set(metrics_series("usage_tracking_consumer_lag", METRIC_GAUGE,
                                      "Messages not yet counted, by partition.", labels),
                       (double)(pi.high - pi.next));
        }
        metric_set(metrics_series("patterntrack_consumer_paused", METRIC_GAUGE,
                                  "1 while consumption is paused by back-pressure.", ""),
                   kafka_paused(app->kafka) ? 1 : 0);
        metric_set(metrics_series("patterntrack_kafka_fetch_wakeups_total", METRIC_COUNTER,
                                  "Fetch wake-ups sent to librdkafka's broker threads while "
                                  "a backlog waits (kafka_wake.h).",
                                  ""),
                   (double)kafka_fetch_wakeups(app->kafka));
    }
    if (app->ingest) {
        metric_set(metrics_series("patterntrack_buffer_bytes", METRIC_GAUGE,
                                  "Bytes held by unflushed batches.", ""),
                   (double)ingest_buffer_bytes(app->ingest));
    }
}
