#include "l_pt.h"

#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "l_cooc.h"
#include "log.h"
#include "text.h"

static const char ARRAY_MT[] = "pt.array";

void l_pt_mark_array(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    luaL_getmetatable(L, ARRAY_MT);
    lua_setmetatable(L, idx);
}

static void put_string(pg_buf_t *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    pg_buf_putc(out, '"');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            pg_buf_put(out, "\\\"", 2);
            break;
        case '\\':
            pg_buf_put(out, "\\\\", 2);
            break;
        case '\n':
            pg_buf_put(out, "\\n", 2);
            break;
        case '\r':
            pg_buf_put(out, "\\r", 2);
            break;
        case '\t':
            pg_buf_put(out, "\\t", 2);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                pg_buf_put(out, e, 6);
            } else {
                pg_buf_putc(out, (char)c);
            }
        }
    }
    pg_buf_putc(out, '"');
}

/* An array when marked, or when its keys are exactly 1..n (n > 0). */
static int is_array(lua_State *L, int idx, lua_Integer *n)
{
    if (lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, ARRAY_MT);
        int marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked) {
            *n = (lua_Integer)lua_rawlen(L, idx);
            return 1;
        }
    }
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k > max) {
            max = k;
        }
        count++;
    }
    *n = max;
    return count > 0 && count == max;
}

static int encode(lua_State *L, int idx, pg_buf_t *out, int depth, char *err, size_t errlen)
{
    idx = lua_absindex(L, idx);
    if (depth > 64) {
        snprintf(err, errlen, "JSON nesting deeper than 64 (a cycle?)");
        return -1;
    }
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        pg_buf_put(out, "null", 4);
        return 0;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* cjson.null */
            pg_buf_put(out, "null", 4);
            return 0;
        }
        break;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) {
            pg_buf_put(out, "true", 4);
        } else {
            pg_buf_put(out, "false", 5);
        }
        return 0;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            pg_buf_printf(out, "%lld", (long long)lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            if (!isfinite(d)) {
                pg_buf_put(out, "null", 4);
            } else {
                char num[40];
                snprintf(num, sizeof num, "%.15g", d);
                if (strtod(num, NULL) != d) {
                    snprintf(num, sizeof num, "%.17g", d);
                }
                pg_buf_put(out, num, strlen(num));
                /* keep it a float in the client's eyes */
                if (!strpbrk(num, ".eEn")) {
                    pg_buf_put(out, ".0", 2);
                }
            }
        }
        return 0;
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        put_string(out, s, len);
        return 0;
    }
    case LUA_TTABLE: {
        luaL_checkstack(L, 4, "json");
        lua_Integer n;
        if (is_array(L, idx, &n)) {
            pg_buf_putc(out, '[');
            for (lua_Integer i = 1; i <= n; i++) {
                if (i > 1) {
                    pg_buf_putc(out, ',');
                }
                lua_rawgeti(L, idx, i);
                int rc = encode(L, -1, out, depth + 1, err, errlen);
                lua_pop(L, 1);
                if (rc != 0) {
                    return -1;
                }
            }
            pg_buf_putc(out, ']');
            return 0;
        }
        pg_buf_putc(out, '{');
        int first = 1;
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (!first) {
                pg_buf_putc(out, ',');
            }
            first = 0;
            if (lua_type(L, -2) == LUA_TSTRING) {
                size_t kl;
                const char *k = lua_tolstring(L, -2, &kl);
                put_string(out, k, kl);
            } else if (lua_type(L, -2) == LUA_TNUMBER) {
                lua_pushvalue(L, -2);
                size_t kl;
                const char *k = lua_tolstring(L, -1, &kl); /* converts the copy, not the key */
                put_string(out, k, kl);
                lua_pop(L, 1);
            } else {
                lua_pop(L, 2);
                snprintf(err, errlen, "JSON object keys must be strings or numbers");
                return -1;
            }
            pg_buf_putc(out, ':');
            if (encode(L, -1, out, depth + 1, err, errlen) != 0) {
                lua_pop(L, 2);
                return -1;
            }
            lua_pop(L, 1);
        }
        pg_buf_putc(out, '}');
        return 0;
    }
    default:
        break;
    }
    snprintf(err, errlen, "a %s has no JSON form", luaL_typename(L, idx));
    return -1;
}

int l_pt_encode(lua_State *L, int idx, pg_buf_t *out, char *err, size_t errlen)
{
    return encode(L, idx, out, 0, err, errlen);
}

static int l_pt_json(lua_State *L) /* [-1, +1] */
{
    pg_buf_t b;
    pg_buf_init(&b);
    char err[256];
    lua_settop(L, 1);
    if (encode(L, 1, &b, 0, err, sizeof err) != 0) {
        pg_buf_free(&b);
        return luaL_error(L, "pt.json: %s", err);
    }
    lua_pushlstring(L, b.data ? b.data : "", b.len);
    pg_buf_free(&b);
    return 1;
}

static int l_pt_array(lua_State *L) /* [-0|1, +1] */
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    l_pt_mark_array(L, 1);
    return 1;
}

static int l_pt_traceback(lua_State *L) /* [-1, +1] */
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL && !lua_isnoneornil(L, 1)) {
        lua_pushvalue(L, 1); /* tables (structured errors) pass through untouched */
        return 1;
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int l_pt_now(lua_State *L) /* [-0, +1] */
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    lua_pushnumber(L, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
    return 1;
}

/* pt.parse_time(s) -> seconds since the epoch (float) or nil. [-1, +1] */
/* Argument 1 parsed as a time into *us; false (and nil pushed) when it is not one. [-0, +0|1] */
static bool check_time(lua_State *L, int64_t *us)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (!text_parse_time(s, len, us)) {
        lua_pushnil(L);
        return false;
    }
    return true;
}

static int l_pt_parse_time(lua_State *L)
{
    int64_t us;
    if (!check_time(L, &us)) {
        return 1;
    }
    lua_pushnumber(L, (double)us / 1e6);
    return 1;
}

/* pt.normalize_time(s) -> the same time as "YYYY-MM-DDTHH:MM:SS.ffffffZ" (exact to the
 * microsecond, unlike pt.iso(pt.parse_time(s))), or nil when s is not a time. What a route sends
 * PostgreSQL instead of a client's text, which PostgreSQL might read otherwise or refuse. [-1, +1]
 */
static int l_pt_normalize_time(lua_State *L)
{
    int64_t us;
    if (!check_time(L, &us)) {
        return 1;
    }
    char buf[40];
    text_format_time(us, buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

/* pt.iso(seconds) -> "YYYY-MM-DDTHH:MM:SS.ffffffZ". [-1, +1] */
static int l_pt_iso(lua_State *L)
{
    double secs = luaL_checknumber(L, 1);
    char buf[40];
    text_format_time((int64_t)llround(secs * 1e6), buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

/* pt.iso_us(us) -> microseconds since the epoch as PostgreSQL's timestamptz reaches a route
 * (l_db.c): "YYYY-MM-DDTHH:MM:SS[.fraction]Z", the fraction without trailing zeros, none when
 * whole. For times a route computes from partner lists, shown beside times read from SQL.
 * [-1, +1] */
static int l_pt_iso_us(lua_State *L)
{
    lua_Integer us = luaL_checkinteger(L, 1);
    char buf[40];
    text_format_time((int64_t)us, buf, sizeof buf);
    size_t n = strlen(buf); /* ...SS.ffffffZ */
    char *dot = strchr(buf, '.');
    if (dot != NULL && n > 0 && buf[n - 1] == 'Z') {
        size_t end = n - 1;
        while (end > (size_t)(dot - buf) + 1 && buf[end - 1] == '0') {
            end--;
        }
        if (end == (size_t)(dot - buf) + 1) {
            end = (size_t)(dot - buf); /* a whole second: no fraction */
        }
        buf[end] = 'Z';
        buf[end + 1] = '\0';
    }
    lua_pushstring(L, buf);
    return 1;
}

/* pt.log(level, message): [-2, +0] */
static int l_pt_log(lua_State *L)
{
    const char *lvl = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    log_level_t level;
    if (!log_parse_level(lvl, &level)) {
        return luaL_error(L, "pt.log: level must be debug, info, warn or error");
    }
    log_msg(level, "%s", msg);
    return 0;
}

void l_pt_open(lua_State *L)
{
    if (luaL_newmetatable(L, ARRAY_MT)) {
        lua_pushstring(L, "array");
        lua_setfield(L, -2, "__name");
        /* Hidden from getmetatable: a route that added a __gc to it would have every later
         * pt.array() finalized outside the instruction budget (see lua/pt/sandbox.lua). */
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"json", l_pt_json},
                                   {"array", l_pt_array},
                                   {"traceback", l_pt_traceback},
                                   {"now", l_pt_now},
                                   {"parse_time", l_pt_parse_time},
                                   {"normalize_time", l_pt_normalize_time},
                                   {"iso", l_pt_iso},
                                   {"iso_us", l_pt_iso_us},
                                   {"log", l_pt_log},
                                   {NULL, NULL}};
    luaL_newlib(L, fns);
    l_cooc_register(L);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
}
