#include "lvm.h"

#include <errno.h>
#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct lvm {
    lua_State *L;
    size_t used;
    size_t limit;
    int64_t budget_left;
    bool timed_out;
    int sandbox_ref;
    int decode_ref;
    int traceback_ref;
};

static void *lvm_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lvm_t *vm = ud;
    /* When ptr is NULL, osize encodes the object type, not a size. */
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        vm->used -= old;
        free(ptr);
        return NULL;
    }
    if (vm->limit > 0 && nsize > old && vm->used + (nsize - old) > vm->limit) {
        return NULL; /* Lua runs an emergency collection, then raises a memory error */
    }
    void *p = realloc(ptr, nsize);
    if (p != NULL) {
        vm->used = vm->used - old + nsize;
    }
    return p;
}

static int panic_cb(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    log_error("lua panic: %s", msg ? msg : "(no message)");
    abort();
    return 0;
}

char *lvm_readfile(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap + 1);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = '\0';
    if (len) {
        *len = n;
    }
    return buf;
}

/* readfile(path) -> string | nil, err. Given to the trusted sandbox module only. */
static int l_lvm_readfile(lua_State *L) /* [-1, +1|2] */
{
    const char *path = luaL_checkstring(L, 1);
    size_t len;
    char *buf = lvm_readfile(path, &len);
    if (buf == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(errno));
        return 2;
    }
    lua_pushlstring(L, buf, len);
    free(buf);
    return 1;
}

static int traceback_cb(lua_State *L) /* [-1, +1] */
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
            return 1;
        }
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lvm_t *vm = *(lvm_t **)lua_getextraspace(L);
    vm->timed_out = true;
    /* Fire again on the very next instruction: a pcall in the rule that catches this error
     * gets no further than one instruction before the next one. */
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "rule timeout");
}

lvm_t *lvm_new(const char *root, size_t mem_limit, char *err, size_t errlen)
{
    lvm_t *vm = calloc(1, sizeof *vm);
    char path[4096];
    char *src = NULL;
    if (vm == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    vm->L = lua_newstate(lvm_alloc, vm);
    if (vm->L == NULL) {
        snprintf(err, errlen, "cannot create a Lua state");
        goto fail;
    }
    lua_State *L = vm->L;
    *(lvm_t **)lua_getextraspace(L) = vm;
    lua_atpanic(L, panic_cb);
    /* Generational collection: most objects die young (a request's tables, an event's decoded
     * JSON) while cached answers and loaded code stay for long. The incremental collector
     * marked all of those again every cycle, and its atomic phases showed as stalls of 10-30 ms
     * in the event loop once the route caches held tens of MB. */
    lua_gc(L, LUA_GCGEN, 0, 0);
    /* The allow-list: base, string, table, math, utf8, os (narrowed by the sandbox). No io,
     * debug or package; cjson is opened from C. */
    static const luaL_Reg libs[] = {{LUA_GNAME, luaopen_base},
                                    {LUA_STRLIBNAME, luaopen_string},
                                    {LUA_TABLIBNAME, luaopen_table},
                                    {LUA_MATHLIBNAME, luaopen_math},
                                    {LUA_UTF8LIBNAME, luaopen_utf8},
                                    {LUA_OSLIBNAME, luaopen_os},
                                    {NULL, NULL}};
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    /* Host-level globals that would let code read files or load bytecode. The sandbox never
     * exposes them, but the trusted chunk should not rely on that either. */
    lua_pushnil(L);
    lua_setglobal(L, "dofile");
    lua_pushnil(L);
    lua_setglobal(L, "loadfile");

    lua_pushcfunction(L, traceback_cb);
    vm->traceback_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    luaopen_cjson(L); /* [+1] the host's own instance */
    lua_getfield(L, -1, "decode_max_depth");
    lua_pushinteger(L, 128);
    lua_call(L, 1, 0);
    lua_getfield(L, -1, "decode");
    vm->decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    snprintf(path, sizeof path, "%s/lua/pt/sandbox.lua", root);
    size_t len;
    src = lvm_readfile(path, &len);
    if (src == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    if (luaL_loadbufferx(L, src, len, "@lua/pt/sandbox.lua", "t") != LUA_OK) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        goto fail;
    }
    lua_pushcfunction(L, l_lvm_readfile);
    lua_pushstring(L, root);
    lua_pushvalue(L, -4); /* the cjson module */
    if (lvm_pcall(vm, 3, 1, 0) != LUA_OK) {
        snprintf(err, errlen, "lua/pt/sandbox.lua: %s", lua_tostring(L, -1));
        goto fail;
    }
    vm->sandbox_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1); /* cjson */
    free(src);
    /* The cap applies from here: loading the host's own code is not the user's budget. */
    vm->limit = mem_limit > 0 ? vm->used + mem_limit : 0;
    return vm;
fail:
    free(src);
    lvm_free(vm);
    return NULL;
}

void lvm_free(lvm_t *vm)
{
    if (vm == NULL) {
        return;
    }
    if (vm->L) {
        lua_close(vm->L);
    }
    free(vm);
}

lua_State *lvm_state(lvm_t *vm)
{
    return vm->L;
}

size_t lvm_mem_used(const lvm_t *vm)
{
    return vm->used;
}

int lvm_pcall(lvm_t *vm, int nargs, int nresults, int64_t budget)
{
    lua_State *L = vm->L;
    int base = lua_gettop(L) - nargs;
    lua_rawgeti(L, LUA_REGISTRYINDEX, vm->traceback_ref);
    lua_insert(L, base);
    vm->timed_out = false;
    if (budget > 0) {
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, budget > INT32_MAX ? INT32_MAX : (int)budget);
    }
    int rc = lua_pcall(L, nargs, nresults, base);
    if (budget > 0) {
        lua_sethook(L, NULL, 0, 0);
    }
    lua_remove(L, base);
    if (rc != LUA_OK && vm->timed_out) {
        lua_pop(L, 1);
        lua_pushliteral(L, "rule timeout: the instruction budget ran out");
        return LVM_TIMEOUT;
    }
    return rc;
}

void lvm_push_sandbox(lvm_t *vm)
{
    lua_rawgeti(vm->L, LUA_REGISTRYINDEX, vm->sandbox_ref);
}

void lvm_push_readfile(lvm_t *vm)
{
    lua_pushcfunction(vm->L, l_lvm_readfile);
}

void lvm_push_decode(lvm_t *vm)
{
    lua_rawgeti(vm->L, LUA_REGISTRYINDEX, vm->decode_ref);
}

int lvm_resume(lvm_t *vm, lua_State *co, int nargs, int *nres, int64_t budget)
{
    vm->timed_out = false;
    if (budget > 0) {
        lua_sethook(co, budget_hook, LUA_MASKCOUNT, budget > INT32_MAX ? INT32_MAX : (int)budget);
    }
    int rc = lua_resume(co, vm->L, nargs, nres);
    lua_sethook(co, NULL, 0, 0);
    if (rc != LUA_OK && rc != LUA_YIELD) {
        if (vm->timed_out) {
            lua_pushliteral(co, "route timeout: the instruction budget ran out");
            return LVM_TIMEOUT;
        }
        const char *msg = lua_tostring(co, -1);
        luaL_traceback(co, co, msg ? msg : "(error object is not a string)", 0);
    }
    return rc;
}
