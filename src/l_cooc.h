/* l_cooc: pt.cooc_partners and pt.cooc_top_pairs, the co-occurrence routes' work on the partner
 * lists of sql/012 (decoding, summing, exact ranking), which SQL would do at several
 * microseconds an entry. Owns no state. */
#ifndef PT_L_COOC_H
#define PT_L_COOC_H

#include <lua.h>

/* Adds the functions to the table on top of the stack: [-0, +0] */
void l_cooc_register(lua_State *L);

#endif
