#include "flush.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cooc.h"
#include "log.h"
#include "pg.h"
#include "text.h"

static const char flush_sql[] =
    "SELECT pt_flush($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, "
    "$17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)";

/* The parameters of a large flush are tens of megabytes of array text: building them took
 * 30-120 ms, and on the event loop that was 30-120 ms without HTTP answers or Kafka reads at
 * every flush. A builder thread makes them while the loop goes on; the aggregate is the
 * in-flight batch, which nothing changes until this flush has ended. */
struct flush {
    pg_conn_t *conn;
    char *group;
    const config_t *cfg;
    flush_cb cb;
    void *ud;
    struct timespec started;
    int64_t timeout_ms; /* this attempt's */
    int timeouts;       /* attempts in a row that ran out of time */
    /* builder thread; the fields below the mutex are shared with it */
    pthread_t thread;
    bool thread_up;
    int pipe[2]; /* the builder writes a byte when parameters are ready */
    struct event *ev_built;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const agg_t *job; /* to build, or NULL */
    bool durable;
    bool built;
    bool stop;
    char *values[FLUSH_NPARAMS];
    int lengths[FLUSH_NPARAMS];
    int n;
};

static void *builder_main(void *arg)
{
    flush_t *f = arg;
    pthread_mutex_lock(&f->mu);
    for (;;) {
        while (f->job == NULL && !f->stop) {
            pthread_cond_wait(&f->cv, &f->mu);
        }
        if (f->stop) {
            break;
        }
        const agg_t *a = f->job;
        bool durable = f->durable;
        pthread_mutex_unlock(&f->mu);
        char *values[FLUSH_NPARAMS];
        int lengths[FLUSH_NPARAMS];
        int n = flush_build(a, f->group, durable, values, lengths);
        pthread_mutex_lock(&f->mu);
        memcpy(f->values, values, sizeof values);
        memcpy(f->lengths, lengths, sizeof lengths);
        f->n = n;
        f->job = NULL;
        f->built = true;
        ssize_t w;
        do {
            w = write(f->pipe[1], "b", 1);
        } while (w < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

static void built_cb(evutil_socket_t fd, short what, void *arg);

flush_t *flush_new(struct event_base *base, const config_t *c)
{
    flush_t *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return NULL;
    }
    f->pipe[0] = f->pipe[1] = -1;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->conn = pg_conn_new(base, c->database_url, "flush");
    f->group = strdup(c->kafka_group_id);
    f->cfg = c;
    if (f->conn == NULL || f->group == NULL || pipe(f->pipe) != 0 ||
        fcntl(f->pipe[0], F_SETFL, O_NONBLOCK) != 0 ||
        (f->ev_built = event_new(base, f->pipe[0], EV_READ | EV_PERSIST, built_cb, f)) == NULL ||
        event_add(f->ev_built, NULL) != 0) {
        flush_free(f);
        return NULL;
    }
    if (pthread_create(&f->thread, NULL, builder_main, f) != 0) {
        flush_free(f);
        return NULL;
    }
    f->thread_up = true;
    return f;
}

void flush_free(flush_t *f)
{
    if (f == NULL) {
        return;
    }
    if (f->thread_up) {
        pthread_mutex_lock(&f->mu);
        f->stop = true;
        pthread_cond_signal(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->thread, NULL);
    }
    if (f->built) {
        flush_build_free(f->values, f->n);
    }
    if (f->ev_built) {
        event_free(f->ev_built);
    }
    for (int i = 0; i < 2; i++) {
        if (f->pipe[i] >= 0) {
            close(f->pipe[i]);
        }
    }
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    pg_conn_free(f->conn);
    free(f->group);
    free(f);
}

bool flush_busy(const flush_t *f)
{
    return f->cb != NULL;
}

bool flush_pg_down(const flush_t *f)
{
    return pg_conn_broken(f->conn);
}

typedef struct {
    pg_buf_t pat, agent, cnt, first, last;
    bool any;
} uses_ctx_t;

static void sep(pg_buf_t *b, bool first)
{
    if (!first) {
        pg_array_next(b);
    }
}

static void use_cb(const agg_use_t *u, void *ud)
{
    uses_ctx_t *x = ud;
    bool first = !x->any;
    sep(&x->pat, first);
    sep(&x->agent, first);
    sep(&x->cnt, first);
    sep(&x->first, first);
    sep(&x->last, first);
    pg_array_text(&x->pat, u->pattern, u->pattern_len);
    pg_array_text(&x->agent, u->agent, u->agent_len);
    pg_array_int(&x->cnt, u->count);
    pg_array_int(&x->first, u->first_us);
    pg_array_int(&x->last, u->last_us);
    x->any = true;
}

typedef struct {
    pg_buf_t pat, hour, cnt;
    bool any;
} hours_ctx_t;

/* The rows of pattern_cooccurrence_pending (sql/012): one per pattern of the batch's pairs,
 * its partners as a partner list (cooc.h), n entries of which n_low sort below the pattern. The
 * lists go in one bytea (c_data) cut by their lengths (c_len): the flush's backend copies
 * them, where array literals of partners cost it a parse of every element (78 us per event of 8
 * patterns). c_data goes in binary format (flush_send). Grouping here rather than in SQL: the
 * builder thread has a core to itself, the flush's backend has not. */
typedef struct {
    pg_buf_t *pat, *n, *low, *lens, *data;
    const char *cur; /* the pattern whose list is being written (interned: one pointer each) */
    uint32_t cur_len;
    size_t start, entries, n_low, rows;
    cooc_writer_t w;
} pairs_ctx_t;

static void end_row(pairs_ctx_t *x)
{
    if (x->rows > 0) {
        pg_array_next(x->pat);
        pg_array_next(x->n);
        pg_array_next(x->low);
        pg_array_next(x->lens);
    }
    pg_array_text(x->pat, x->cur, x->cur_len);
    pg_array_int(x->n, (int64_t)x->entries);
    pg_array_int(x->low, (int64_t)x->n_low);
    pg_array_int(x->lens, (int64_t)(x->data->len - x->start));
    x->rows++;
}

static void side_cb(const agg_side_t *e, void *ud)
{
    pairs_ctx_t *x = ud;
    if (e->pattern != x->cur) {
        if (x->cur != NULL) {
            end_row(x);
        }
        x->cur = e->pattern;
        x->cur_len = e->pattern_len;
        x->start = x->data->len;
        x->entries = x->n_low = 0;
        cooc_writer_init(&x->w, x->data);
    }
    x->entries++;
    x->n_low += agg_bytes_cmp(e->partner, e->partner_len, e->pattern, e->pattern_len) < 0;
    cooc_write(&x->w, e->partner, e->partner_len, e->count, e->last_us);
}

static void build_pairs(const agg_t *a, pg_buf_t *pat, pg_buf_t *n, pg_buf_t *low, pg_buf_t *lens,
                        pg_buf_t *data)
{
    pairs_ctx_t x = {.pat = pat, .n = n, .low = low, .lens = lens, .data = data};
    agg_each_side(a, side_cb, &x);
    if (x.cur != NULL) {
        end_row(&x);
    }
}

static void hour_cb(const agg_hour_t *h, void *ud)
{
    hours_ctx_t *x = ud;
    bool first = !x->any;
    sep(&x->pat, first);
    sep(&x->hour, first);
    sep(&x->cnt, first);
    pg_array_text(&x->pat, h->pattern, h->pattern_len);
    pg_array_int(&x->hour, h->hour);
    pg_array_int(&x->cnt, h->count);
    x->any = true;
}

static void open_arrays(pg_buf_t *bufs, int n)
{
    for (int i = 0; i < n; i++) {
        pg_buf_init(&bufs[i]);
        pg_buf_putc(&bufs[i], '{');
    }
}

/* Text for a dead letter's detail: PostgreSQL text must be UTF-8. */
static void put_detail(pg_buf_t *b, const char *s)
{
    if (s == NULL) {
        pg_buf_put(b, "NULL", 4);
        return;
    }
    size_t n = strlen(s);
    if (text_utf8_valid(s, n)) {
        pg_array_text(b, s, n);
        return;
    }
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    }
    pg_array_text(b, copy, n);
    free(copy);
}

int flush_build(const agg_t *a, const char *group, bool durable, char **values, int *lengths)
{
    pg_buf_t b[FLUSH_NPARAMS - 2];
    open_arrays(b, FLUSH_NPARAMS - 2);
    /* offsets: b[0..3] */
    for (size_t i = 0; i < agg_n_offsets(a); i++) {
        const agg_offset_t *o = agg_offset_at(a, i);
        for (int k = 0; k < 4 && i > 0; k++) {
            pg_array_next(&b[k]);
        }
        pg_array_text(&b[0], o->topic, strlen(o->topic));
        pg_array_int(&b[1], o->partition);
        pg_array_int(&b[2], o->expected);
        pg_array_int(&b[3], o->next);
    }
    /* uses: b[4..8] */
    uses_ctx_t uc = {.pat = b[4], .agent = b[5], .cnt = b[6], .first = b[7], .last = b[8]};
    agg_each_use(a, use_cb, &uc);
    b[4] = uc.pat;
    b[5] = uc.agent;
    b[6] = uc.cnt;
    b[7] = uc.first;
    b[8] = uc.last;
    /* hours: b[9..11] */
    hours_ctx_t hc = {.pat = b[9], .hour = b[10], .cnt = b[11]};
    agg_each_hour(a, hour_cb, &hc);
    b[9] = hc.pat;
    b[10] = hc.hour;
    b[11] = hc.cnt;
    /* topics: b[12..16], b[24..25] */
    for (size_t i = 0; i < agg_n_topics(a); i++) {
        const agg_topic_t *t = agg_topic_at(a, i);
        if (i > 0) {
            for (int k = 12; k < 17; k++) {
                pg_array_next(&b[k]);
            }
            pg_array_next(&b[24]);
            pg_array_next(&b[25]);
        }
        pg_array_text(&b[12], t->topic, strlen(t->topic));
        pg_array_int(&b[13], t->events);
        pg_array_int(&b[14], t->without_patterns);
        pg_array_int(&b[15], t->dead_letters);
        pg_array_int(&b[16], t->flagged);
        pg_array_int(&b[24], t->with_patterns);
        pg_array_int(&b[25], t->over_pair_limit);
    }
    /* pairs: b[26..29] arrays, b[30] one bytea (not an array: no braces) */
    pg_buf_reset(&b[30]);
    build_pairs(a, &b[26], &b[27], &b[28], &b[29], &b[30]);
    /* dead letters: b[17..23] */
    for (size_t i = 0; i < agg_n_dead(a); i++) {
        const agg_dead_t *d = agg_dead_at(a, i);
        for (int k = 17; k < 24 && i > 0; k++) {
            pg_array_next(&b[k]);
        }
        pg_array_text(&b[17], d->topic, strlen(d->topic));
        pg_array_int(&b[18], d->partition);
        pg_array_int(&b[19], d->offset);
        pg_array_text(&b[20], d->reason, strlen(d->reason));
        put_detail(&b[21], d->detail);
        pg_array_bytea(&b[22], d->payload, d->payload_len);
        pg_array_int(&b[23], (int64_t)d->payload_size);
    }
    values[0] = strdup(group);
    lengths[0] = (int)strlen(group);
    for (int i = 0; i < FLUSH_NPARAMS - 2; i++) {
        if (i != 30) {
            pg_array_end(&b[i]);
        }
        values[i + 1] = b[i].data;
        lengths[i + 1] = (int)b[i].len;
    }
    values[FLUSH_NPARAMS - 1] = strdup(durable ? "true" : "false");
    lengths[FLUSH_NPARAMS - 1] = (int)strlen(values[FLUSH_NPARAMS - 1]);
    return FLUSH_NPARAMS;
}

void flush_build_free(char **values, int n)
{
    for (int i = 0; i < n; i++) {
        free(values[i]);
    }
}

/* SQLSTATEs after which the same flush may succeed: connection trouble, deadlock,
 * serialization failure, shutdown, resource shortage. */
static bool transient(const char *st)
{
    return strncmp(st, "08", 2) == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0 ||
           strncmp(st, "57P", 3) == 0 || strncmp(st, "53", 2) == 0 || st[0] == '\0';
}

static int64_t attempt_timeout(const flush_t *f)
{
    return f->cfg->flush_timeout_ms << (f->timeouts < 3 ? f->timeouts : 3);
}

static void result_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    flush_t *f = ud;
    flush_cb cb = f->cb;
    void *cud = f->ud;
    f->cb = NULL;
    f->ud = NULL;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double secs =
        (double)(now.tv_sec - f->started.tv_sec) + (double)(now.tv_nsec - f->started.tv_nsec) / 1e9;
    if (res == NULL) {
        if (pg_conn_timed_out(c)) {
            /* A flush that needs longer than flush_timeout_ms (a large batch against a large
             * database) would otherwise be abandoned at every attempt and never commit: each
             * timeout in a row doubles the next attempt's time, up to 8 times the setting. */
            f->timeouts++;
            log_warn("flush ran out of time after %.1f s (flush_timeout_ms); the next attempt may "
                     "take up to %lld ms",
                     secs, (long long)attempt_timeout(f));
        }
        cb(FLUSH_RETRY, err, secs, cud);
        return;
    }
    f->timeouts = 0;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        cb(FLUSH_OK, NULL, secs, cud);
        return;
    }
    const char *state = pg_sqlstate(res);
    const char *msg = PQresultErrorMessage(res);
    if (strcmp(state, "PT409") == 0) {
        cb(FLUSH_CONFLICT, msg, secs, cud);
        return;
    }
    if (!transient(state)) {
        /* Not a passing condition: a schema change, a constraint from another system, a bug.
         * The batch is kept and retried, so nothing is lost, but someone must look. */
        log_error("flush failed with SQLSTATE %s (retrying; this needs attention): %s", state, msg);
    }
    cb(FLUSH_RETRY, msg, secs, cud);
}

int flush_send(flush_t *f, const agg_t *a, bool durable, flush_cb cb, void *ud)
{
    if (f->cb != NULL) {
        return -1;
    }
    f->cb = cb;
    f->ud = ud;
    clock_gettime(CLOCK_MONOTONIC, &f->started);
    pthread_mutex_lock(&f->mu);
    f->job = a;
    f->durable = durable;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

/* The builder is done: send the query. */
static void built_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    flush_t *f = arg;
    char drain[16];
    while (read(fd, drain, sizeof drain) > 0) {
    }
    pthread_mutex_lock(&f->mu);
    bool built = f->built;
    char *values[FLUSH_NPARAMS];
    int lengths[FLUSH_NPARAMS];
    int n = f->n;
    memcpy(values, f->values, sizeof values);
    memcpy(lengths, f->lengths, sizeof lengths);
    f->built = false;
    pthread_mutex_unlock(&f->mu);
    if (!built) {
        return;
    }
    f->timeout_ms = attempt_timeout(f);
    /* c_data ($32) in binary: the partner lists as they are, not twice their size in hex */
    int formats[FLUSH_NPARAMS] = {0};
    formats[FLUSH_DATA_PARAM] = 1;
    int rc = pg_conn_query_fmt(f->conn, flush_sql, n, (const char *const *)values, lengths, formats,
                               false, f->timeout_ms, result_cb, f);
    flush_build_free(values, n);
    if (rc != 0) {
        flush_cb cb = f->cb;
        void *cud = f->ud;
        f->cb = NULL;
        f->ud = NULL;
        cb(FLUSH_RETRY, "cannot start the flush query (out of memory)", 0.0, cud);
    }
}
