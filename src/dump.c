#include "dump.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <string.h>

#include "cooc.h"

/* Each kind of list with its table and columns; binary results: the lists as stored. */
static const struct {
    const char *kind, *src, *sql;
} sources[] = {
    {"agents", "folded",
     "SELECT pattern_id, pattern_id, n_agents, 0, agents FROM pattern_lists "
     "WHERE agents IS NOT NULL"},
    {"partners", "folded",
     "SELECT pattern_id, pattern_id, n_partners, n_low, partners FROM pattern_lists "
     "WHERE partners IS NOT NULL"},
    {"agents", "pending",
     "SELECT ctid::text, pattern_id, n_agents, 0, agents FROM pattern_lists_pending "
     "WHERE agents IS NOT NULL"},
    {"partners", "pending",
     "SELECT ctid::text, pattern_id, n_partners, n_low, partners FROM pattern_lists_pending "
     "WHERE partners IS NOT NULL"},
    {"patterns", "folded",
     "SELECT agent_name, agent_name, n_patterns, 0, patterns FROM agent_lists"},
    {"patterns", "pending",
     "SELECT ctid::text, agent_name, n_patterns, 0, patterns FROM agent_lists_pending"},
};

/* s as a COPY text field. */
static void put_field(FILE *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '\\':
            fputs("\\\\", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        default:
            fputc(s[i], out);
        }
    }
}

static int32_t int4_at(PGresult *r, int row, int col)
{
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

/* One result row's list, every entry a line. */
static int dump_row(PGresult *r, const char *kind, const char *src, FILE *out, char *err,
                    size_t errlen)
{
    const char *rid = PQgetvalue(r, 0, 0), *owner = PQgetvalue(r, 0, 1);
    size_t rid_len = (size_t)PQgetlength(r, 0, 0), owner_len = (size_t)PQgetlength(r, 0, 1);
    cooc_iter_t it;
    if (PQgetlength(r, 0, 2) != 4 || PQgetlength(r, 0, 3) != 4 ||
        !cooc_iter_init(&it, PQgetvalue(r, 0, 4), (size_t)PQgetlength(r, 0, 4))) {
        snprintf(err, errlen, "%s list of %.*s: %s", kind, (int)owner_len, owner,
                 it.err ? it.err : "unexpected result");
        return -1;
    }
    int64_t ord = 0;
    while (cooc_iter_next(&it)) {
        fprintf(out, "%s\t%s\t", kind, src);
        put_field(out, rid, rid_len);
        fputc('\t', out);
        put_field(out, owner, owner_len);
        fprintf(out, "\t%" PRId32 "\t%" PRId32 "\t%" PRId64 "\t", int4_at(r, 0, 2),
                int4_at(r, 0, 3), ++ord);
        put_field(out, it.id, it.len);
        fprintf(out, "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\n", it.count, it.first_us,
                it.last_us);
    }
    if (it.err != NULL) {
        snprintf(err, errlen, "%s list of %.*s: %s", kind, (int)owner_len, owner, it.err);
        return -1;
    }
    return 0;
}

static bool exec_ok(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
    }
    PQclear(r);
    return ok;
}

int dump_lists(const config_t *c, const char *snapshot, FILE *out, char *err, size_t errlen)
{
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *vals[] = {c->database_url, "patterntrack-dump", NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    int rc = -1;
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
        goto done;
    }
    if (!exec_ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", err, errlen)) {
        goto done;
    }
    if (snapshot != NULL) {
        /* SET TRANSACTION takes no bound parameter: the id is quoted by libpq */
        char *lit = PQescapeLiteral(conn, snapshot, strlen(snapshot));
        char sql[256];
        snprintf(sql, sizeof sql, "SET TRANSACTION SNAPSHOT %s", lit ? lit : "''");
        PQfreemem(lit);
        if (!exec_ok(conn, sql, err, errlen)) {
            goto done;
        }
    }
    for (size_t s = 0; s < sizeof sources / sizeof sources[0]; s++) {
        /* row by row: a large table's lists are not all held at once */
        if (!PQsendQueryParams(conn, sources[s].sql, 0, NULL, NULL, NULL, NULL, 1) ||
            !PQsetSingleRowMode(conn)) {
            snprintf(err, errlen, "%s", PQerrorMessage(conn));
            goto done;
        }
        PGresult *r;
        bool failed = false;
        while ((r = PQgetResult(conn)) != NULL) {
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_SINGLE_TUPLE && !failed) {
                failed = dump_row(r, sources[s].kind, sources[s].src, out, err, errlen) != 0;
            } else if (st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE && !failed) {
                snprintf(err, errlen, "%s", PQresultErrorMessage(r));
                failed = true;
            }
            PQclear(r);
        }
        if (failed) {
            goto done;
        }
    }
    if (fflush(out) != 0 || ferror(out)) {
        snprintf(err, errlen, "cannot write the rows");
        goto done;
    }
    rc = exec_ok(conn, "COMMIT", err, errlen) ? 0 : -1;
done:
    PQfinish(conn);
    return rc;
}
