#include "migrate.h"

#include <dirent.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "lvm.h"

#define MAX_MIGRATIONS 256

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

int migrate_run(const config_t *c, int wait_s, char *err, size_t errlen)
{
    char dir[4096];
    config_path(c, "sql", dir, sizeof dir);
    char *names[MAX_MIGRATIONS];
    size_t n = 0;
    int rc = -1;
    PGconn *conn = NULL;
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "cannot open %s", dir);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 8 && e->d_name[0] >= '0' && e->d_name[0] <= '9' &&
            strcmp(e->d_name + len - 4, ".sql") == 0 && n < MAX_MIGRATIONS) {
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_names);

    conn = connect_wait(c->database_url, wait_s, err, errlen);
    if (conn == NULL) {
        goto done;
    }
    PQsetNoticeProcessor(conn, NULL, NULL);
    if (exec_ok(conn, "SET client_min_messages = warning", err, errlen) != 0 ||
        exec_ok(conn, "SELECT pg_advisory_lock(7412503911)", err, errlen) != 0 ||
        exec_ok(conn,
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
                err, errlen) != 0) {
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        int version = atoi(names[i]);
        char path[4600];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t len;
        char *sql = lvm_readfile(path, &len);
        if (sql == NULL) {
            snprintf(err, errlen, "cannot read %s", path);
            goto done;
        }
        char sum[32], ver[16];
        snprintf(sum, sizeof sum, "%016llx", checksum(sql, len));
        snprintf(ver, sizeof ver, "%d", version);
        const char *p1[1] = {ver};
        PGresult *r =
            PQexecParams(conn, "SELECT checksum FROM schema_migrations WHERE version = $1", 1, NULL,
                         p1, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            snprintf(err, errlen, "schema_migrations: %s", PQresultErrorMessage(r));
            PQclear(r);
            free(sql);
            goto done;
        }
        if (PQntuples(r) == 1) {
            if (strcmp(PQgetvalue(r, 0, 0), sum) != 0) {
                log_warn("migration %s was changed after it was applied (it is not re-run)",
                         names[i]);
            }
            PQclear(r);
            free(sql);
            continue;
        }
        PQclear(r);
        log_info("applying migration %s", names[i]);
        char msg[1024];
        if (exec_ok(conn, "BEGIN", msg, sizeof msg) != 0 ||
            exec_ok(conn, sql, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "migration %s failed: %s", names[i], msg);
            PGresult *rb = PQexec(conn, "ROLLBACK");
            PQclear(rb);
            free(sql);
            goto done;
        }
        free(sql);
        const char *p3[3] = {ver, names[i], sum};
        r = PQexecParams(
            conn, "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", 3,
            NULL, p3, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            snprintf(err, errlen, "migration %s: %s", names[i], PQresultErrorMessage(r));
            PQclear(r);
            PGresult *rb = PQexec(conn, "ROLLBACK");
            PQclear(rb);
            goto done;
        }
        PQclear(r);
        if (exec_ok(conn, "COMMIT", msg, sizeof msg) != 0) {
            snprintf(err, errlen, "migration %s: commit failed: %s", names[i], msg);
            goto done;
        }
    }
    rc = 0;
done:
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
    }
    PQfinish(conn);
    return rc;
}
