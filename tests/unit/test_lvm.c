/* lvm: the instruction budget stops code that loops, also inside pcall and across many pcalls;
 * the memory cap stops code that allocates without bound and leaves the state usable; the
 * sandbox given to rules holds the allow-list (no io, os.execute, dofile, loadfile,
 * collectgarbage, require of host modules, binary chunks or __gc). */
#include "check.h"
#include "lvm.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef PT_SOURCE_DIR
#define PT_SOURCE_DIR "."
#endif

/* Runs chunk in vm's state with budget; returns lvm_pcall's status, the message or first result
 * as text in out. */
static int run(lvm_t *vm, const char *chunk, int64_t budget, char *out, size_t outlen)
{
    lua_State *L = lvm_state(vm);
    int top = lua_gettop(L);
    if (luaL_loadstring(L, chunk) != LUA_OK) {
        snprintf(out, outlen, "load: %s", lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    int rc = lvm_pcall(vm, 0, 1, budget);
    const char *s = luaL_tolstring(L, -1, NULL);
    snprintf(out, outlen, "%s", s ? s : "?");
    lua_settop(L, top);
    return rc;
}

static void test_budget(void)
{
    char err[512], out[512];
    lvm_t *vm = lvm_new(PT_SOURCE_DIR, 0, err, sizeof err);
    CHECK(vm != NULL);
    if (vm == NULL) {
        fprintf(stderr, "lvm_new: %s\n", err);
        return;
    }
    CHECK_EQ_INT(run(vm, "while true do end", 100000, out, sizeof out), LVM_TIMEOUT);
    CHECK(strstr(out, "rule timeout") != NULL);
    /* a pcall inside the code cannot catch the budget's end */
    CHECK_EQ_INT(run(vm, "pcall(function() while true do end end) return 'escaped'", 100000, out,
                     sizeof out),
                 LVM_TIMEOUT);
    CHECK_EQ_INT(run(vm,
                     "for i = 1, 1e9 do pcall(function() while true do end end) end "
                     "return 'escaped'",
                     100000, out, sizeof out),
                 LVM_TIMEOUT);
    /* within the budget: runs, and the next call gets a full budget again */
    CHECK_EQ_INT(
        run(vm, "local n = 0 for i = 1, 1000 do n = n + i end return n", 100000, out, sizeof out),
        LUA_OK);
    CHECK_EQ_STR(out, "500500");
    CHECK_EQ_INT(
        run(vm, "local n = 0 for i = 1, 1000 do n = n + i end return n", 100000, out, sizeof out),
        LUA_OK);
    /* an error is an error, with a traceback */
    CHECK_EQ_INT(run(vm, "error('boom')", 100000, out, sizeof out), LUA_ERRRUN);
    CHECK(strstr(out, "boom") != NULL && strstr(out, "traceback") != NULL);
    lvm_free(vm);
}

static void test_memory_cap(void)
{
    char err[512], out[512];
    size_t cap = 8u << 20;
    lvm_t *vm = lvm_new(PT_SOURCE_DIR, cap, err, sizeof err);
    CHECK(vm != NULL);
    if (vm == NULL) {
        return;
    }
    size_t base = lvm_mem_used(vm); /* the cap is on top of what loading the sandbox took */
    int rc = run(vm,
                 "local t = {} for i = 1, 1e8 do t[i] = string.rep('x', 100) .. i end "
                 "return #t",
                 0, out, sizeof out);
    CHECK_EQ_INT(rc, LUA_ERRMEM);
    CHECK(lvm_mem_used(vm) <= base + cap);
    /* the state goes on: its garbage is collected and small work runs */
    lua_gc(lvm_state(vm), LUA_GCCOLLECT);
    CHECK(lvm_mem_used(vm) < base + cap / 2);
    CHECK_EQ_INT(run(vm, "return ('ok'):upper()", 0, out, sizeof out), LUA_OK);
    CHECK_EQ_STR(out, "OK");
    lvm_free(vm);
}

static void test_allow_list(void)
{
    char err[512];
    lvm_t *vm = lvm_new(PT_SOURCE_DIR, 16u << 20, err, sizeof err);
    CHECK(vm != NULL);
    if (vm == NULL) {
        return;
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/pt-test-lvm-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *rule =
        "return function()\n"
        "  local seen = {}\n"
        "  for _, k in ipairs({'io', 'dofile', 'loadfile', 'collectgarbage', 'debug',\n"
        "                      'package'}) do\n"
        "    seen[#seen + 1] = k .. '=' .. type(_ENV[k])\n"
        "  end\n"
        "  seen[#seen + 1] = 'os.execute=' .. type(os.execute)\n"
        "  seen[#seen + 1] = 'require(io)=' .. tostring((pcall(require, 'io')))\n"
        "  seen[#seen + 1] = 'binary=' .. tostring((load(string.dump and string.dump(function() "
        "end) or\n"
        "                                                 '\\27Lua', 'x', 'b')))\n"
        "  seen[#seen + 1] = 'gc=' .. tostring((pcall(setmetatable, {}, {__gc = function() "
        "end})))\n"
        "  seen[#seen + 1] = 'string=' .. type(string.format)\n"
        "  return table.concat(seen, ' ')\n"
        "end\n";
    if (fd >= 0) {
        CHECK(write(fd, rule, strlen(rule)) == (ssize_t)strlen(rule));
        close(fd);
    }
    lua_State *L = lvm_state(vm);
    lvm_push_sandbox(vm);
    lua_getfield(L, -1, "load_rule");
    lua_pushstring(L, path);
    lua_pushstring(L, "rules/test.lua");
    lua_newtable(L);
    CHECK_EQ_INT(lvm_pcall(vm, 3, 2, 1000000), LUA_OK);
    CHECK(lua_type(L, -2) == LUA_TFUNCTION);
    if (lua_type(L, -2) != LUA_TFUNCTION) {
        fprintf(stderr, "load_rule: %s\n", luaL_tolstring(L, -1, NULL));
    }
    if (lua_type(L, -2) == LUA_TFUNCTION) {
        lua_pop(L, 1);
        CHECK_EQ_INT(lvm_pcall(vm, 0, 1, 1000000), LUA_OK);
        const char *s = lua_tostring(L, -1);
        CHECK_EQ_STR(s ? s : "?", "io=nil dofile=nil loadfile=nil collectgarbage=nil debug=nil "
                                  "package=nil os.execute=nil require(io)=false binary=nil "
                                  "gc=false string=function");
    }
    unlink(path);
    lvm_free(vm);
}

int main(void)
{
    test_budget();
    test_memory_cap();
    test_allow_list();
    return check_done("test_lvm");
}
