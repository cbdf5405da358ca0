/* migrate: brings the database's schema to this tree's. Two kinds of SQL:
 *   sql/NNN_name.sql         numbered migrations: table, index and data changes, each applied
 *                            once, in order, recorded in schema_migrations;
 *   sql/functions/NAME.sql   the current definition of each function the engine calls, and
 *   sql/views/NAME.sql       of each view, one per file named after it; all of them are
 *                            applied again whenever one of them changed or a migration ran
 *                            (recorded with their checksums in schema_definitions).
 * Pending migrations and definitions go in one transaction under an advisory lock, so that
 * instances starting together do not race and a failure changes nothing. Functions are applied
 * before the pending migrations (one may call a function no earlier migration defines) and after
 * them; views last. Dropping a function or view, or an old signature of one, is a migration.
 * The only blocking libpq use in the engine; it runs before the event loop starts. */
#ifndef PT_MIGRATE_H
#define PT_MIGRATE_H

#include <stddef.h>

#include "config.h"

/* Waits up to wait_s seconds for PostgreSQL to accept connections. 0 on success; -1 with a
 * message naming the failing file and PostgreSQL's error otherwise. */
int migrate_run(const config_t *c, int wait_s, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
