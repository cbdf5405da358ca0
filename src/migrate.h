/* migrate: applies the versioned SQL files in sql/ (NNN_name.sql, in order) that the database
 * has not recorded in schema_migrations, each in its own transaction, under an advisory lock so
 * that instances starting together do not race. The only blocking libpq use in the engine; it
 * runs before the event loop starts. */
#ifndef PT_MIGRATE_H
#define PT_MIGRATE_H

#include <stddef.h>

#include "config.h"

/* Waits up to wait_s seconds for PostgreSQL to accept connections. 0 on success; -1 with a
 * message naming the failing file and PostgreSQL's error otherwise. */
int migrate_run(const config_t *c, int wait_s, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
