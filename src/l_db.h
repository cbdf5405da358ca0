/* l_db: the `db` table of routes. db.query(sql, ...) runs a query with bound parameters on the
 * pool and suspends the calling route until the rows arrive; rows come back as an array of
 * tables keyed by column name, typed by the column's PostgreSQL type. Errors: a failed query
 * raises a message; PostgreSQL unreachable or busy raises {status = 503, detail = ...}. */
#ifndef PT_L_DB_H
#define PT_L_DB_H

#include <lua.h>

#include "routes.h"

/* Pushes the db table for r: [-0, +1] */
void l_db_open(lua_State *L, routes_t *r);

#endif
