#include "migrate.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "lvm.h"

#define MAX_FILES 256

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* FNV-1a of the file, so an edited migration that was already applied is noticed. */
static unsigned long long checksum(const char *s, size_t n)
{
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int exec_ok(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = 0;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        rc = -1;
    }
    PQclear(r);
    return rc;
}

static PGconn *connect_wait(const char *url, int wait_s, char *err, size_t errlen)
{
    time_t deadline = time(NULL) + wait_s;
    int attempt = 0;
    for (;;) {
        const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
        const char *vals[] = {url, "10", "patterntrack-migrate", NULL};
        PGconn *conn = PQconnectdbParams(keys, vals, 1);
        if (conn && PQstatus(conn) == CONNECTION_OK) {
            return conn;
        }
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s",
                 conn ? PQerrorMessage(conn) : "out of memory");
        PQfinish(conn);
        if (time(NULL) >= deadline) {
            return NULL;
        }
        if (attempt++ == 0) {
            log_warn("%s (waiting up to %d s)", err, wait_s);
        }
        sleep(1);
    }
}

/* The files of one kind in dir, sorted by name: numbered migrations (NNN_name.sql) when
 * numbered, else every *.sql. Returns how many (at most MAX_FILES), -1 if dir cannot be read
 * (a missing definitions directory is no files). */
static int list_sql(const char *dir, bool numbered, char **names)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return numbered ? -1 : 0;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        bool sql = len > 4 && strcmp(e->d_name + len - 4, ".sql") == 0;
        bool num = len > 8 && e->d_name[0] >= '0' && e->d_name[0] <= '9';
        if (sql && e->d_name[0] != '.' && (!numbered || num) && n < MAX_FILES) {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_names);
    return n;
}

typedef struct {
    char *name; /* e.g. "functions/pt_flush.sql" */
    char *sql;
    char sum[32];
} def_t;

/* Reads every definition of sql/<kind>/ into defs (from *n on). */
static int read_defs(const char *root, const char *kind, def_t *defs, size_t *n, char *err,
                     size_t errlen)
{
    char dir[4200], *names[MAX_FILES];
    snprintf(dir, sizeof dir, "%s/%s", root, kind);
    int k = list_sql(dir, false, names);
    int rc = 0;
    for (int i = 0; i < k; i++) {
        char path[4600];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *sql = lvm_readfile(path, &len);
        if (sql == NULL || *n >= MAX_FILES) {
            snprintf(err, errlen, "cannot read %s", path);
            free(sql);
            rc = -1;
        } else {
            def_t *d = &defs[(*n)++];
            size_t nl = strlen(kind) + strlen(names[i]) + 2;
            d->name = malloc(nl);
            if (d->name == NULL) {
                abort();
            }
            snprintf(d->name, nl, "%s/%s", kind, names[i]);
            d->sql = sql;
            snprintf(d->sum, sizeof d->sum, "%016llx", checksum(sql, len));
        }
        free(names[i]);
    }
    return rc;
}

/* Applies the definitions of one kind ("functions/" or "views/"), in name order. */
static int apply_defs(PGconn *conn, const def_t *defs, size_t n, const char *kind, char *err,
                      size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        if (strncmp(defs[i].name, kind, strlen(kind)) != 0) {
            continue;
        }
        char msg[1024];
        if (exec_ok(conn, defs[i].sql, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "sql/%s failed: %s", defs[i].name, msg);
            return -1;
        }
    }
    return 0;
}

static int record(PGconn *conn, const char *sql, int n, const char *const *vals, char *err,
                  size_t errlen)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, vals, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        rc = -1;
    }
    PQclear(r);
    return rc;
}

int migrate_run(const config_t *c, int wait_s, char *err, size_t errlen)
{
    char dir[4096];
    config_path(c, "sql", dir, sizeof dir);
    char *names[MAX_FILES];
    def_t defs[MAX_FILES];
    size_t n_defs = 0;
    bool *pending = NULL;
    int rc = -1;
    bool in_tx = false;
    PGconn *conn = NULL;
    int n = list_sql(dir, true, names);
    if (n < 0) {
        snprintf(err, errlen, "cannot open %s", dir);
        return -1;
    }
    if (read_defs(dir, "functions", defs, &n_defs, err, errlen) != 0 ||
        read_defs(dir, "views", defs, &n_defs, err, errlen) != 0) {
        goto done;
    }
    pending = calloc((size_t)n + 1, sizeof *pending);
    conn = connect_wait(c->database_url, wait_s, err, errlen);
    if (pending == NULL || conn == NULL) {
        goto done;
    }
    PQsetNoticeProcessor(conn, NULL, NULL);
    if (exec_ok(conn, "SET client_min_messages = warning", err, errlen) != 0 ||
        exec_ok(conn, "SELECT pg_advisory_lock(7412503911)", err, errlen) != 0 ||
        exec_ok(conn, "BEGIN", err, errlen) != 0) {
        goto done;
    }
    in_tx = true;
    if (exec_ok(conn,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now());"
                "CREATE TABLE IF NOT EXISTS schema_definitions ("
                " name TEXT PRIMARY KEY, checksum TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                err, errlen) != 0) {
        goto done;
    }
    /* Which migrations are pending, and whether any definition changed. */
    int n_pending = 0;
    bool changed = false;
    for (int i = 0; i < n; i++) {
        char path[4600], sum[32], ver[16];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *sql = lvm_readfile(path, &len);
        if (sql == NULL) {
            snprintf(err, errlen, "cannot read %s", path);
            goto done;
        }
        snprintf(sum, sizeof sum, "%016llx", checksum(sql, len));
        free(sql);
        snprintf(ver, sizeof ver, "%d", atoi(names[i]));
        const char *p1[1] = {ver};
        PGresult *r =
            PQexecParams(conn, "SELECT checksum FROM schema_migrations WHERE version = $1", 1, NULL,
                         p1, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            snprintf(err, errlen, "schema_migrations: %s", PQresultErrorMessage(r));
            PQclear(r);
            goto done;
        }
        if (PQntuples(r) == 1) {
            if (strcmp(PQgetvalue(r, 0, 0), sum) != 0) {
                log_warn("migration %s was changed after it was applied (it is not re-run)",
                         names[i]);
            }
        } else {
            pending[i] = true;
            n_pending++;
        }
        PQclear(r);
    }
    for (size_t i = 0; i < n_defs && !changed; i++) {
        const char *p2[2] = {defs[i].name, defs[i].sum};
        PGresult *r = PQexecParams(conn,
                                   "SELECT 1 FROM schema_definitions WHERE name = $1 "
                                   "AND checksum = $2",
                                   2, NULL, p2, NULL, NULL, 0);
        changed = PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1;
        PQclear(r);
    }
    if (n_pending == 0 && !changed) {
        rc = exec_ok(conn, "COMMIT", err, errlen);
        in_tx = false;
        goto done;
    }
    /* Function bodies are not checked when they are defined: a definition may name a table a
     * pending migration creates. The current functions are in place before the migrations run
     * (a migration may call one that no earlier migration defines), and again after them (an
     * older migration may have replaced one with its own version); views come last, once every
     * table and function they name exists. */
    if (exec_ok(conn, "SET LOCAL check_function_bodies = off", err, errlen) != 0 ||
        apply_defs(conn, defs, n_defs, "functions/", err, errlen) != 0) {
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (!pending[i]) {
            continue;
        }
        char path[4600], sum[32], ver[16], msg[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *sql = lvm_readfile(path, &len);
        if (sql == NULL) {
            snprintf(err, errlen, "cannot read %s", path);
            goto done;
        }
        snprintf(sum, sizeof sum, "%016llx", checksum(sql, len));
        snprintf(ver, sizeof ver, "%d", atoi(names[i]));
        log_info("applying migration %s", names[i]);
        int e = exec_ok(conn, sql, msg, sizeof msg);
        free(sql);
        if (e != 0) {
            snprintf(err, errlen, "migration %s failed: %s", names[i], msg);
            goto done;
        }
        const char *p3[3] = {ver, names[i], sum};
        if (record(conn,
                   "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", 3,
                   p3, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "migration %s: %s", names[i], msg);
            goto done;
        }
    }
    if (apply_defs(conn, defs, n_defs, "functions/", err, errlen) != 0 ||
        apply_defs(conn, defs, n_defs, "views/", err, errlen) != 0 ||
        exec_ok(conn, "DELETE FROM schema_definitions", err, errlen) != 0) {
        goto done;
    }
    for (size_t i = 0; i < n_defs; i++) {
        const char *p2[2] = {defs[i].name, defs[i].sum};
        if (record(conn, "INSERT INTO schema_definitions (name, checksum) VALUES ($1, $2)", 2, p2,
                   err, errlen) != 0) {
            goto done;
        }
    }
    if (changed) {
        log_info("applied the definitions of sql/functions and sql/views");
    }
    if (exec_ok(conn, "COMMIT", err, errlen) != 0) {
        goto done;
    }
    in_tx = false;
    rc = 0;
done:
    if (in_tx) {
        PGresult *rb = PQexec(conn, "ROLLBACK");
        PQclear(rb);
    }
    for (int i = 0; i < n; i++) {
        free(names[i]);
    }
    for (size_t i = 0; i < n_defs; i++) {
        free(defs[i].name);
        free(defs[i].sql);
    }
    free(pending);
    PQfinish(conn);
    return rc;
}
