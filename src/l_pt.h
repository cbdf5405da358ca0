/* l_pt: the `pt` table that routes see: JSON encoding with a real array marker (lua-cjson 2.1
 * cannot encode an empty array), null, time helpers and a traceback message handler. Owns no
 * state beyond the array metatable in the registry. */
#ifndef PT_L_PT_H
#define PT_L_PT_H

#include <lua.h>

#include "pg_buf.h"

/* Pushes a new `pt` table: [-0, +1]. */
void l_pt_open(lua_State *L);
/* Marks the table at idx as a JSON array: [-0, +0]. */
void l_pt_mark_array(lua_State *L, int idx);
/* Encodes the value at idx as JSON into out; -1 with a message in err on a value that has no
 * JSON form (a function, a cycle, too deep). */
int l_pt_encode(lua_State *L, int idx, pg_buf_t *out, char *err, size_t errlen);

#endif
