/* l_cooc: pt.list_entries (an owner's partner lists decoded, summed and ranked: a pattern's
 * agents or co-occurring patterns, an agent's patterns) and pt.cooc_top_pairs (the exact top
 * co-occurring pairs), the routes' work on the partner lists (cooc.h), which SQL would do at
 * several microseconds an entry. Owns no state. */
#ifndef PT_L_COOC_H
#define PT_L_COOC_H

#include <lua.h>

/* Adds the functions to the table on top of the stack: [-0, +0] */
void l_cooc_register(lua_State *L);

#endif
