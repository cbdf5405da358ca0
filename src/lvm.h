/* lvm: one sandboxed Lua 5.4 state: a counting allocator with a cap, the allow-listed
 * libraries, lua-cjson, the sandbox module (lua/pt/sandbox.lua) and protected calls with an
 * instruction budget and a traceback. Owns the lua_State; does not know what runs in it (rules,
 * routes or the config file). */
#ifndef PT_LVM_H
#define PT_LVM_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct lvm lvm_t;

/* Status of lvm_pcall beyond Lua's own: the budget ran out. */
#define LVM_TIMEOUT 100

/* mem_limit: bytes the state may hold (0 = no cap). Loads root/lua/pt/sandbox.lua. */
lvm_t *lvm_new(const char *root, size_t mem_limit, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void lvm_free(lvm_t *vm);
lua_State *lvm_state(lvm_t *vm);
size_t lvm_mem_used(const lvm_t *vm);

/* Calls the function below nargs arguments, like lua_pcall, with a message handler that adds a
 * traceback. budget > 0 caps the instructions the call may run: when it runs out the call fails
 * with LVM_TIMEOUT and the message "rule timeout", and a pcall inside the called code cannot
 * catch it. On error the message is left on the stack: [-(nargs+1), +(nresults|1)]. */
int lvm_pcall(lvm_t *vm, int nargs, int nresults, int64_t budget);

/* Resumes coroutine co (which must belong to this state) like lua_resume, with the same
 * instruction budget as lvm_pcall; LVM_TIMEOUT when it ran out. On error the message (with a
 * traceback of co) is on co's stack top. */
int lvm_resume(lvm_t *vm, lua_State *co, int nargs, int *nres, int64_t budget);

/* Pushes the sandbox module table (lua/pt/sandbox.lua's M): [-0, +1]. */
void lvm_push_sandbox(lvm_t *vm);
/* Pushes the readfile function given to the sandbox: [-0, +1]. */
void lvm_push_readfile(lvm_t *vm);
/* Pushes the host's cjson.decode: [-0, +1]. */
void lvm_push_decode(lvm_t *vm);

/* Reads a whole file; caller frees. NULL with errno set on failure. */
char *lvm_readfile(const char *path, size_t *len);

#endif
