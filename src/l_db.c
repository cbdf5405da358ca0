#include "l_db.h"

#include <lauxlib.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "l_pt.h"
#include "log.h"
#include "text.h"

#define DB_MAX_PARAMS 64

/* PostgreSQL type OIDs (pg_type.h) that get a Lua type other than string. */
enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_NUMERIC = 1700,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_TEXTARRAY = 1009,
    OID_VARCHARARRAY = 1015,
};

typedef struct {
    route_req_t *rr;
    pg_job_t *job;
    pg_pool_t *pool;
} pending_t;

/* "2025-11-04 15:02:11.734918+00" -> "2025-11-04T15:02:11.734918Z" (sessions run in UTC). */
static void push_timestamp(lua_State *L, const char *v)
{
    char buf[48];
    size_t n = strlen(v);
    if (n >= sizeof buf - 1 || n < 19) {
        lua_pushstring(L, v);
        return;
    }
    memcpy(buf, v, n + 1);
    buf[10] = 'T';
    if (n >= 3 && (strcmp(buf + n - 3, "+00") == 0)) {
        n -= 3;
    }
    buf[n++] = 'Z';
    buf[n] = '\0';
    lua_pushstring(L, buf);
}

/* Parses a one-dimensional text array literal into a Lua array: [-0, +1] */
static void push_text_array(lua_State *L, const char *v)
{
    lua_newtable(L);
    l_pt_mark_array(L, -1);
    size_t n = strlen(v);
    if (n < 2 || v[0] != '{') {
        return;
    }
    luaL_Buffer b;
    lua_Integer idx = 0;
    size_t i = 1;
    while (i < n && v[i] != '}') {
        luaL_buffinit(L, &b);
        bool quoted = v[i] == '"';
        if (quoted) {
            i++;
            while (i < n && v[i] != '"') {
                if (v[i] == '\\' && i + 1 < n) {
                    i++;
                }
                luaL_addchar(&b, v[i]);
                i++;
            }
            i++; /* closing quote */
            luaL_pushresult(&b);
        } else {
            size_t start = i;
            while (i < n && v[i] != ',' && v[i] != '}') {
                i++;
            }
            luaL_addlstring(&b, v + start, i - start);
            luaL_pushresult(&b);
            if (i - start == 4 && memcmp(v + start, "NULL", 4) == 0) {
                lua_pop(L, 1);
                lua_pushlightuserdata(L, NULL);
            }
        }
        lua_rawseti(L, -2, ++idx);
        if (i < n && v[i] == ',') {
            i++;
        }
    }
}

/* bytea in hex output (\x0a1b..., the server's default since 9.0) -> its bytes; anything
 * else (escape output) as the text it came in. [-0, +1] */
static void push_bytea(lua_State *L, const char *v, size_t n)
{
    if (n < 2 || v[0] != '\\' || v[1] != 'x' || n % 2 != 0) {
        lua_pushlstring(L, v, n);
        return;
    }
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, (n - 2) / 2);
    for (size_t i = 2; i < n; i += 2) {
        int hi = text_hex_digit(v[i]), lo = text_hex_digit(v[i + 1]);
        if (hi < 0 || lo < 0) {
            luaL_pushresultsize(&b, 0);
            lua_pop(L, 1);
            lua_pushlstring(L, v, n);
            return;
        }
        out[(i - 2) / 2] = (char)(hi << 4 | lo);
    }
    luaL_pushresultsize(&b, (n - 2) / 2);
}

static void push_value(lua_State *L, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        lua_pushlightuserdata(L, NULL);
        return;
    }
    const char *v = PQgetvalue(res, row, col);
    switch (PQftype(res, col)) {
    case OID_BOOL:
        lua_pushboolean(L, v[0] == 't');
        break;
    case OID_INT8:
    case OID_INT2:
    case OID_INT4:
    case OID_OID:
        lua_pushinteger(L, strtoll(v, NULL, 10));
        break;
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC:
        lua_pushnumber(L, strtod(v, NULL));
        break;
    case OID_TIMESTAMP:
    case OID_TIMESTAMPTZ:
        push_timestamp(L, v);
        break;
    case OID_TEXTARRAY:
    case OID_VARCHARARRAY:
        push_text_array(L, v);
        break;
    case OID_BYTEA:
        push_bytea(L, v, (size_t)PQgetlength(res, row, col));
        break;
    default:
        lua_pushstring(L, v);
    }
}

/* Pushes the rows of res: [-0, +1] */
static void push_rows(lua_State *L, const PGresult *res)
{
    int nrows = PQntuples(res), ncols = PQnfields(res);
    lua_createtable(L, nrows, 0);
    l_pt_mark_array(L, -1);
    for (int r = 0; r < nrows; r++) {
        lua_createtable(L, 0, ncols);
        for (int c = 0; c < ncols; c++) {
            push_value(L, res, r, c);
            lua_setfield(L, -2, PQfname(res, c));
        }
        lua_rawseti(L, -2, r + 1);
    }
}

static int push_rows_protected(lua_State *L)
{
    push_rows(L, lua_touserdata(L, 1));
    return 1;
}

static void push_unavailable(lua_State *L, const char *detail)
{
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, 503);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, detail);
    lua_setfield(L, -2, "detail");
}

static void cancel_cb(void *ud)
{
    pending_t *p = ud;
    pg_pool_cancel(p->pool, p->job);
    free(p);
}

static void result_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    pending_t *p = ud;
    route_req_t *rr = p->rr;
    free(p);
    routes_set_pending(rr, NULL, NULL);
    lua_State *co = routes_thread(rr);
    if (res == NULL) {
        log_warn("http query: PostgreSQL unavailable: %s", err ? err : "?");
        lua_pushboolean(co, 0);
        push_unavailable(co, "database unavailable");
    } else if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK) {
        /* The rows are built on the main state in a protected call: an answer larger than
         * lua_memory_mb is then this request's 503, not Lua's panic (abort) for the engine, and
         * the coroutine, which a memory error inside it would reset, can still be resumed. */
        lua_State *L = routes_main_state(rr);
        lua_pushcfunction(L, push_rows_protected);
        lua_pushlightuserdata(L, res);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
            lua_pushboolean(co, 1);
            lua_xmove(L, co, 1);
        } else {
            log_warn("http query: %d rows do not fit in lua_memory_mb (%s)", PQntuples(res),
                     lua_isstring(L, -1) ? lua_tostring(L, -1) : "Lua error");
            lua_pop(L, 1);
            lua_pushboolean(co, 0);
            push_unavailable(co, "the answer does not fit in lua_memory_mb");
        }
    } else {
        const char *state = pg_sqlstate(res);
        lua_pushboolean(co, 0);
        if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 ||
            strcmp(state, "57014") == 0 || strncmp(state, "53", 2) == 0) {
            push_unavailable(co, strcmp(state, "57014") == 0 ? "query timed out"
                                                             : "database unavailable");
        } else {
            lua_pushfstring(co, "query failed (SQLSTATE %s): %s", state, PQresultErrorMessage(res));
        }
    }
    routes_resume(rr, 2);
}

/* Continuation after the rows (or the error) arrived: [-2, +1] */
static int l_db_query_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    if (!lua_toboolean(L, -2)) {
        return lua_error(L); /* the error value on top */
    }
    return 1;
}

/* Starts the query whose SQL is at stack index `at` (parameters after it) and yields.
 * [-(n), +1] */
static int start_query(lua_State *L, int at, int64_t timeout_ms, bool heavy)
{
    routes_t *r = lua_touserdata(L, lua_upvalueindex(1));
    route_req_t *rr = routes_current(r, L);
    if (rr == NULL) {
        return luaL_error(L, "db.query can only be called while handling a request");
    }
    const char *sql = luaL_checkstring(L, at);
    int n = lua_gettop(L) - at;
    if (n > DB_MAX_PARAMS) {
        return luaL_error(L, "db.query: at most %d parameters", DB_MAX_PARAMS);
    }
    int64_t cap = routes_query_timeout(r);
    if (timeout_ms <= 0 || (cap > 0 && timeout_ms > cap)) {
        timeout_ms = cap;
    }
    const char *vals[DB_MAX_PARAMS];
    for (int i = 0; i < n; i++) {
        int idx = i + at + 1;
        switch (lua_type(L, idx)) {
        case LUA_TNIL:
            vals[i] = NULL;
            break;
        case LUA_TLIGHTUSERDATA:
            if (lua_touserdata(L, idx) != NULL) {
                return luaL_error(L, "db.query: parameter %d has no SQL form", i + 1);
            }
            vals[i] = NULL;
            break;
        case LUA_TBOOLEAN:
            vals[i] = lua_toboolean(L, idx) ? "true" : "false";
            break;
        case LUA_TNUMBER:
        case LUA_TSTRING:
            /* converts numbers in place; the strings live on the stack until the yield ends */
            vals[i] = lua_tostring(L, idx);
            break;
        default:
            return luaL_error(L,
                              "db.query: parameter %d is a %s (only strings, numbers, "
                              "booleans and nil bind)",
                              i + 1, luaL_typename(L, idx));
        }
    }
    pending_t *p = malloc(sizeof *p);
    if (p == NULL) {
        return luaL_error(L, "out of memory");
    }
    p->rr = rr;
    p->pool = routes_pool(r);
    p->job = pg_pool_query(p->pool, sql, n, vals, timeout_ms, heavy, result_cb, p);
    if (p->job == NULL) {
        free(p);
        push_unavailable(L, "database busy: too many queries waiting");
        return lua_error(L);
    }
    routes_set_pending(rr, cancel_cb, p);
    return lua_yieldk(L, 0, 0, l_db_query_k);
}

/* db.query(sql, ...) -> rows, within query_timeout_ms. [-(n), +1] */
static int l_db_query(lua_State *L)
{
    return start_query(L, 1, 0, false);
}

/* db.query_heavy(sql, ...) -> rows: as db.query, for aggregates over whole tables; these run
 * on at most half of the pool, so one-pattern queries never queue behind them. [-(n), +1] */
static int l_db_query_heavy(lua_State *L)
{
    return start_query(L, 1, 0, true);
}

/* db.query_within(ms, sql, ...) -> rows: as db.query, but gives up after ms (at most
 * query_timeout_ms), for answers that must come quickly even from a stalled server (/health).
 * [-(n), +1] */
static int l_db_query_within(lua_State *L)
{
    lua_Integer ms = luaL_checkinteger(L, 1);
    luaL_argcheck(L, ms > 0, 1, "must be a positive number of milliseconds");
    return start_query(L, 2, (int64_t)ms, false);
}

void l_db_open(lua_State *L, routes_t *r)
{
    static const luaL_Reg fns[] = {
        {"query", l_db_query},
        {"query_within", l_db_query_within},
        {"query_heavy", l_db_query_heavy},
        {NULL, NULL},
    };
    lua_createtable(L, 0, 2);
    lua_pushlightuserdata(L, r);
    luaL_setfuncs(L, fns, 1);
}
