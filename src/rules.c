#include "rules.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lvm.h"
#include "text.h"

typedef struct {
    char *topic;
    char *file;
    int fn_ref;
} rule_t;

struct rules {
    lvm_t *vm;
    int64_t budget;
    size_t n;
    rule_t *rules;
    int meta_ref;
    const rule_meta_t *cur_meta; /* the message being extracted; NULL between calls */
    int base;                    /* stack top before rules_run */
    int patterns_idx;            /* stack index of the returned list, 0 when none */
};

/* meta.<field> for the current message: [-2, +1]. The table is a read-only proxy, valid only
 * during the rule call. */
static int l_rules_meta_index(lua_State *L)
{
    rules_t *r = lua_touserdata(L, lua_upvalueindex(1));
    const rule_meta_t *m = r->cur_meta;
    const char *k = lua_tostring(L, 2);
    if (m == NULL || k == NULL) {
        lua_pushnil(L);
        return 1;
    }
    if (strcmp(k, "topic") == 0) {
        lua_pushstring(L, m->topic);
    } else if (strcmp(k, "partition") == 0) {
        lua_pushinteger(L, m->partition);
    } else if (strcmp(k, "offset") == 0) {
        lua_pushinteger(L, m->offset);
    } else if (strcmp(k, "key") == 0) {
        if (m->key) {
            lua_pushlstring(L, m->key, m->key_len);
        } else {
            lua_pushnil(L);
        }
    } else if (strcmp(k, "timestamp") == 0) {
        if (m->timestamp_ms >= 0) {
            lua_pushinteger(L, m->timestamp_ms);
        } else {
            lua_pushnil(L);
        }
    } else if (strcmp(k, "dedupe") == 0) {
        lua_pushboolean(L, m->dedupe);
    } else if (strcmp(k, "headers") == 0) {
        lua_createtable(L, 0, (int)m->n_headers);
        for (size_t i = 0; i < m->n_headers; i++) {
            if (m->header_values[i]) {
                lua_pushlstring(L, m->header_values[i], m->header_lens[i]);
            } else {
                lua_pushboolean(L, 0);
            }
            lua_setfield(L, -2, m->header_names[i]);
        }
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int l_rules_meta_newindex(lua_State *L) /* [-3, +0] */
{
    return luaL_error(L, "meta is read-only");
}

static void free_rules(rules_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->rules[i].topic);
        free(r->rules[i].file);
    }
    free(r->rules);
}

rules_t *rules_new(const config_t *c, char *err, size_t errlen)
{
    rules_t *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->vm = lvm_new(c->root, (size_t)c->lua_memory_mb << 20, err, errlen);
    if (r->vm == NULL) {
        goto fail;
    }
    r->budget = c->rule_instruction_budget;
    lua_State *L = lvm_state(r->vm);

    /* The meta proxy: an empty table whose metatable answers from cur_meta. */
    lua_newtable(L);
    lua_createtable(L, 0, 3);
    lua_pushlightuserdata(L, r);
    lua_pushcclosure(L, l_rules_meta_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_rules_meta_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    r->meta_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    r->rules = calloc(c->n_topics ? c->n_topics : 1, sizeof(rule_t));
    if (r->rules == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    lua_newtable(L); /* the module cache shared by this generation's rules */
    int modules = lua_gettop(L);
    for (size_t i = 0; i < c->n_topics; i++) {
        char path[4096];
        config_path(c, c->topics[i].rule, path, sizeof path);
        lvm_push_sandbox(r->vm);
        lua_getfield(L, -1, "load_rule");
        lua_remove(L, -2);
        lua_pushstring(L, path);
        lua_pushstring(L, c->topics[i].rule);
        lua_pushvalue(L, modules);
        if (lvm_pcall(r->vm, 3, 2, 100000000) != LUA_OK) {
            snprintf(err, errlen, "topic %s: %s", c->topics[i].topic, lua_tostring(L, -1));
            goto fail;
        }
        if (!lua_isfunction(L, -2)) {
            snprintf(err, errlen, "topic %s: %s", c->topics[i].topic,
                     lua_isstring(L, -1) ? lua_tostring(L, -1) : "rule did not load");
            goto fail;
        }
        lua_pop(L, 1);
        r->rules[i].fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        r->rules[i].topic = strdup(c->topics[i].topic);
        r->rules[i].file = strdup(c->topics[i].rule);
        r->n++;
    }
    lua_settop(L, 0);
    return r;
fail:
    rules_free(r);
    return NULL;
}

void rules_free(rules_t *r)
{
    if (r == NULL) {
        return;
    }
    lvm_free(r->vm);
    free_rules(r);
    free(r);
}

int rules_find(const rules_t *r, const char *topic)
{
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->rules[i].topic, topic) == 0) {
            return (int)i;
        }
    }
    return -1;
}

size_t rules_count(const rules_t *r)
{
    return r->n;
}

const char *rules_topic(const rules_t *r, size_t idx)
{
    return r->rules[idx].topic;
}

const char *rules_file(const rules_t *r, size_t idx)
{
    return r->rules[idx].file;
}

size_t rules_mem_used(const rules_t *r)
{
    return lvm_mem_used(r->vm);
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

static rule_status_t fail_status(int rc)
{
    if (rc == LVM_TIMEOUT) {
        return RULE_TIMEOUT;
    }
    if (rc == LUA_ERRMEM) {
        return RULE_NOMEM;
    }
    return RULE_ERROR;
}

/* Checks an agent name the rule returned. */
static bool valid_name(const char *s, size_t len)
{
    return len > 0 && len <= 255 && text_utf8_valid(s, len) && memchr(s, '\0', len) == NULL;
}

/* A float that names one integer exactly: integral and below 2^53 in magnitude (above it, two
 * different IDs in the JSON can decode to the same float). */
static bool integral_id(double v)
{
    return isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0;
}

rule_status_t rules_run(rules_t *r, size_t idx, const char *payload, size_t len,
                        const rule_meta_t *meta, rule_result_t *res, char *err, size_t errlen)
{
    lua_State *L = lvm_state(r->vm);
    r->base = lua_gettop(L);
    r->patterns_idx = 0;
    memset(res, 0, sizeof *res);
    const char *p = skip_ws(payload, payload + len);
    if (p == payload + len || *p != '{') {
        /* Still tell "not JSON" from "JSON but not an object" */
        lvm_push_decode(r->vm);
        lua_pushlstring(L, payload, len);
        /* Plain pcall: a decode error is about the payload, a traceback would say nothing. */
        int rc = lua_pcall(L, 1, 1, 0);
        if (rc == LUA_OK) {
            snprintf(err, errlen, "the event is JSON %s, not an object",
                     lua_type(L, -1) == LUA_TTABLE ? "array" : luaL_typename(L, -1));
            return RULE_NOT_OBJECT;
        }
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        return rc == LUA_ERRMEM ? RULE_NOMEM : RULE_NOT_JSON;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->rules[idx].fn_ref);
    lvm_push_decode(r->vm);
    lua_pushlstring(L, payload, len);
    int rc = lua_pcall(L, 1, 1, 0);
    if (rc != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        return rc == LUA_ERRMEM ? RULE_NOMEM : RULE_NOT_JSON;
    }
    /* The payload began with '{' and decoded, so it is an object. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->meta_ref);
    r->cur_meta = meta;
    rc = lvm_pcall(r->vm, 2, 5, r->budget);
    r->cur_meta = NULL;
    if (rc != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        return fail_status(rc);
    }
    int ai = r->base + 1, pi = r->base + 2, ti = r->base + 3, ni = r->base + 4, ii = r->base + 5;
    int at = lua_type(L, ai);
    if (at == LUA_TNIL || (at == LUA_TBOOLEAN && !lua_toboolean(L, ai))) {
        res->agent = "unknown";
        res->agent_len = 7;
    } else if (at == LUA_TSTRING) {
        res->agent = lua_tolstring(L, ai, &res->agent_len);
        if (!valid_name(res->agent, res->agent_len)) {
            snprintf(err, errlen,
                     "the rule returned an invalid agent name (empty, over 255 "
                     "bytes or not UTF-8)");
            return RULE_BAD_RESULT;
        }
    } else {
        snprintf(err, errlen, "the rule returned a %s as the agent (expected a string)",
                 luaL_typename(L, ai));
        return RULE_BAD_RESULT;
    }
    int pt = lua_type(L, pi);
    if (pt == LUA_TTABLE) {
        r->patterns_idx = pi;
        res->n_patterns = (size_t)lua_rawlen(L, pi);
    } else if (pt != LUA_TNIL) {
        snprintf(err, errlen, "the rule returned a %s as the pattern list (expected a table)",
                 luaL_typename(L, pi));
        return RULE_BAD_RESULT;
    }
    int tt = lua_type(L, ti);
    if (tt == LUA_TSTRING) {
        size_t tl;
        const char *ts = lua_tolstring(L, ti, &tl);
        if (text_parse_time(ts, tl, &res->time_us)) {
            res->has_time = true;
        } else {
            res->time_unusable = true;
        }
    } else if (tt == LUA_TNUMBER) {
        double secs = lua_tonumber(L, ti);
        /* Seconds since the epoch; anything outside years 1970..9999 is not a time. */
        if (isfinite(secs) && secs >= 0 && secs < 253402300800.0) {
            res->time_us = (int64_t)(secs * 1e6);
            res->has_time = true;
        } else {
            res->time_unusable = true;
        }
    } else if (tt != LUA_TNIL) {
        snprintf(err, errlen, "the rule returned a %s as the time (expected a string or number)",
                 luaL_typename(L, ti));
        return RULE_BAD_RESULT;
    }
    int nt = lua_type(L, ni);
    if (nt == LUA_TSTRING) {
        size_t nl;
        res->note = lua_tolstring(L, ni, &nl);
        if (!valid_name(res->note, nl) || nl > 64) {
            snprintf(err, errlen, "the rule returned an invalid note (1..64 bytes of UTF-8)");
            return RULE_BAD_RESULT;
        }
    } else if (nt != LUA_TNIL) {
        snprintf(err, errlen, "the rule returned a %s as the note (expected a string)",
                 luaL_typename(L, ni));
        return RULE_BAD_RESULT;
    }
    int it = lua_type(L, ii);
    if (it == LUA_TSTRING) {
        res->event_id = lua_tolstring(L, ii, &res->event_id_len);
        if (res->event_id_len == 0 || res->event_id_len > 255) {
            snprintf(err, errlen, "the rule returned an event ID of %zu bytes (expected 1..255)",
                     res->event_id_len);
            return RULE_BAD_RESULT;
        }
    } else if (it == LUA_TNUMBER && lua_isinteger(L, ii)) {
        int k = snprintf(res->event_id_buf, sizeof res->event_id_buf, "%lld",
                         (long long)lua_tointeger(L, ii));
        res->event_id = res->event_id_buf;
        res->event_id_len = (size_t)k;
    } else if (it == LUA_TNUMBER && integral_id(lua_tonumber(L, ii))) {
        /* lua-cjson decodes every JSON number as a float: {"id": 12} gives 12.0 */
        int k = snprintf(res->event_id_buf, sizeof res->event_id_buf, "%.0f", lua_tonumber(L, ii));
        res->event_id = res->event_id_buf;
        res->event_id_len = (size_t)k;
    } else if (it != LUA_TNIL) {
        snprintf(err, errlen,
                 "the rule returned a %s as the event ID (expected a string or an integer)",
                 it == LUA_TNUMBER ? "fraction or a number beyond 2^53" : luaL_typename(L, ii));
        return RULE_BAD_RESULT;
    }
    return RULE_OK;
}

const char *rules_pattern(rules_t *r, size_t i, size_t *len)
{
    lua_State *L = lvm_state(r->vm);
    if (r->patterns_idx == 0) {
        return NULL;
    }
    lua_rawgeti(L, r->patterns_idx, (lua_Integer)i + 1);
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        /* The string stays reachable through the list until rules_done. */
        s = lua_tolstring(L, -1, len);
    }
    lua_pop(L, 1);
    return s;
}

void rules_done(rules_t *r)
{
    lua_settop(lvm_state(r->vm), r->base);
    r->patterns_idx = 0;
}
