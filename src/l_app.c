#include "l_app.h"

#include <lauxlib.h>
#include <stdio.h>
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

/* pt.health() -> table describing Kafka, the flush and the buffer: [-0, +1] */
static int l_app_health(lua_State *L)
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
    }
    lua_setfield(L, -2, "ingest");
    return 1;
}

/* pt.metrics() -> the Prometheus text exposition: [-0, +1] */
static int l_app_metrics(lua_State *L)
{
    pg_buf_t b;
    pg_buf_init(&b);
    metrics_render(&b);
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    pg_buf_free(&b);
    return 1;
}

const routes_fn_t l_app_fns[] = {{"health", l_app_health}, {"metrics", l_app_metrics}, {NULL, NULL}};

void l_app_collect(void *ud)
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
    }
    if (app->ingest) {
        metric_set(metrics_series("patterntrack_buffer_bytes", METRIC_GAUGE,
                                  "Bytes held by unflushed batches.", ""),
                   (double)ingest_buffer_bytes(app->ingest));
    }
}
