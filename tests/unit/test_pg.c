/* pg_conn against a real PostgreSQL (with --pg URL): prepared statements (pg_conn_set_prepare)
 * give the same answers as unprepared queries, are prepared once per session (counted with
 * pg_prepared_statements, in that same session), stop at their limit, survive a query that
 * fails to prepare, and are prepared again after the session is dropped. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "pg.h"

typedef struct {
    bool done;
    char value[256];
    char sqlstate[8];
    char err[256];
} answer_t;

static void on_result(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    answer_t *a = ud;
    a->done = true;
    if (res == NULL) {
        snprintf(a->err, sizeof a->err, "%s", err ? err : "?");
    } else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(a->sqlstate, sizeof a->sqlstate, "%s", pg_sqlstate(res));
    } else if (PQntuples(res) == 1) {
        snprintf(a->value, sizeof a->value, "%s", PQgetvalue(res, 0, 0));
    }
}

/* Runs one query to its end (or 10 s) and returns its single value, "ERR <sqlstate>" or
 * "FAIL <why>". */
static const char *run(struct event_base *base, pg_conn_t *c, const char *sql, const char *param)
{
    static char out[300];
    answer_t a = {0};
    const char *vals[1] = {param};
    if (pg_conn_query(c, sql, param ? 1 : 0, vals, NULL, 10000, on_result, &a) != 0) {
        return "FAIL busy";
    }
    while (!a.done) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    if (a.err[0]) {
        snprintf(out, sizeof out, "FAIL %s", a.err);
    } else if (a.sqlstate[0]) {
        snprintf(out, sizeof out, "ERR %s", a.sqlstate);
    } else {
        snprintf(out, sizeof out, "%s", a.value);
    }
    return out;
}

#define COUNT "SELECT count(*) FROM pg_prepared_statements"

static void test_prepare(const char *url)
{
    struct event_base *base = event_base_new();
    pg_conn_t *c = pg_conn_new(base, url, "test");
    CHECK(c != NULL);
    CHECK(pg_conn_set_prepare(c, 3) == 0);

    CHECK_EQ_STR(run(base, c, "SELECT ($1::int + 1)::text", "41"), "42");
    CHECK_EQ_STR(run(base, c, "SELECT ($1::int + 1)::text", "1"), "2");
    /* the text above once, and this one (prepared before it runs) */
    CHECK_EQ_STR(run(base, c, COUNT, NULL), "2");
    CHECK_EQ_STR(run(base, c, COUNT, NULL), "2");
    /* a text PostgreSQL refuses to prepare answers its error, and takes no slot */
    CHECK_EQ_STR(run(base, c, "SELEC 1", NULL), "ERR 42601");
    CHECK_EQ_STR(run(base, c, "SELECT 1/$1::int", "0"), "ERR 22012"); /* fails at execution */
    CHECK_EQ_STR(run(base, c, COUNT, NULL), "3");
    /* the limit (3) is reached: further texts run unprepared, and still answer */
    CHECK_EQ_STR(run(base, c, COUNT " WHERE true", NULL), "3");
    CHECK_EQ_STR(run(base, c, "SELECT upper($1)", "abc"), "ABC");
    CHECK_EQ_STR(run(base, c, COUNT, NULL), "3");

    /* a new session has none: they are prepared again */
    pg_conn_reset(c, "test reset");
    CHECK_EQ_STR(run(base, c, "SELECT ($1::int + 1)::text", "9"), "10");
    CHECK_EQ_STR(run(base, c, COUNT, NULL), "2");

    /* 0: never prepared */
    CHECK(pg_conn_set_prepare(c, 0) == 0);
    CHECK_EQ_STR(run(base, c, "SELECT ($1::int + 1)::text", "1"), "2");
    CHECK_EQ_STR(run(base, c, COUNT, NULL), "0");

    pg_conn_free(c);
    event_base_free(base);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--pg") == 0) {
        test_prepare(argv[2]);
    } else {
        fprintf(stderr, "usage: test_pg --pg URL\n");
        return 2;
    }
    return check_done("test_pg");
}
