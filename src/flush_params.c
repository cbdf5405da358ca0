/* flush_build: a batch (agg.h) as the parameters of pt_flush (sql/functions/pt_flush.sql):
 * array literals of the rows it updates, the keys known.h has not seen committed, and x_data,
 * the partner lists (cooc.h) back to back. Runs on flush.c's builder thread. */
#include "flush.h"

#include <stdlib.h>
#include <string.h>

#include "cooc.h"
#include "known.h"
#include "pg_buf.h"
#include "text.h"

/* A parameter under construction: an array literal (or, for x_data, raw bytes). */
typedef struct {
    pg_buf_t b;
    size_t n;
} arr_t;

static void arr_sep(arr_t *a)
{
    if (a->n++ > 0) {
        pg_array_next(&a->b);
    }
}

/* Unquoted where array_in allows: less for PostgreSQL to parse. */
static void arr_text(arr_t *a, const char *s, size_t len)
{
    arr_sep(a);
    pg_array_word(&a->b, s, len);
}

static void arr_int(arr_t *a, int64_t v)
{
    arr_sep(a);
    pg_array_int(&a->b, v);
}

/* A pattern's co-occurrence list, written before the patterns' agents lists are: its slice of
 * the partner bytes. */
typedef struct {
    const char *pattern; /* interned by the aggregate: one pointer per pattern */
    uint32_t pattern_len;
    size_t off, len, n, n_low;
    int64_t max; /* the largest count: bounds its pairs for /cooccurrence/top */
} plist_t;

typedef struct {
    plist_t *v;
    size_t n, cap;
    pg_buf_t data;
    cooc_writer_t w;
    size_t start;
} partners_t;

static void side_cb(const agg_side_t *e, void *ud)
{
    partners_t *x = ud;
    plist_t *cur = x->n > 0 ? &x->v[x->n - 1] : NULL;
    if (cur == NULL || e->pattern != cur->pattern) {
        if (cur != NULL) {
            cur->len = x->data.len - cur->off;
        }
        if (x->n == x->cap) {
            x->cap = x->cap ? x->cap * 2 : 1024;
            x->v = realloc(x->v, x->cap * sizeof *x->v);
            if (x->v == NULL) {
                abort();
            }
        }
        cur = &x->v[x->n++];
        *cur = (plist_t){e->pattern, e->pattern_len, x->data.len, 0, 0, 0, 0};
        cooc_writer_init(&x->w, &x->data);
    }
    cur->n++;
    cur->max = e->count > cur->max ? e->count : cur->max;
    cur->n_low += agg_bytes_cmp(e->partner, e->partner_len, e->pattern, e->pattern_len) < 0;
    cooc_write(&x->w, e->partner, e->partner_len, e->count, e->last_us);
}

/* Sums of one agent's uses of one pattern_type. */
typedef struct {
    const char *agent; /* interned by the aggregate */
    const char *type;  /* interned by known: one pointer per type */
    uint32_t agent_len, type_len;
    int64_t count, first, last;
} ytot_t;

typedef struct {
    ytot_t *slots;
    size_t cap, n;
} ymap_t;

static ytot_t *ymap_get(ymap_t *m, const char *agent, uint32_t alen, const char *type,
                        uint32_t tlen)
{
    if ((m->n + 1) * 2 >= m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        ytot_t *s = calloc(cap, sizeof *s);
        if (s == NULL) {
            abort();
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (m->slots[i].agent != NULL) {
                size_t j =
                    ((uintptr_t)m->slots[i].agent * 31 + (uintptr_t)m->slots[i].type) & (cap - 1);
                while (s[j].agent != NULL) {
                    j = (j + 1) & (cap - 1);
                }
                s[j] = m->slots[i];
            }
        }
        free(m->slots);
        m->slots = s;
        m->cap = cap;
    }
    size_t j = ((uintptr_t)agent * 31 + (uintptr_t)type) & (m->cap - 1);
    while (m->slots[j].agent != NULL) {
        if (m->slots[j].agent == agent && m->slots[j].type == type) {
            return &m->slots[j];
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->n++;
    m->slots[j] = (ytot_t){agent, type, alen, tlen, 0, INT64_MAX, INT64_MIN};
    return &m->slots[j];
}

typedef struct {
    arr_t *p;
    known_t *known;
    partners_t *partners;
    size_t next_partner;
    ymap_t y;
    /* the owner being written (a pattern in the first pass, an agent in the second) */
    const char *cur;
    uint32_t cur_len;
    const char *cur_type;
    uint32_t cur_type_len;
    int64_t count, first, last;
    size_t entries, start;
    cooc_writer_t w;
} lists_ctx_t;

/* Rows of patterns that have pairs but no uses (not from the ingest, whose pairs come with their
 * uses; from an aggregate built by hand) sorting before `pattern` (NULL: all that are left). */
static void partners_only(lists_ctx_t *x, const char *pattern, uint32_t len)
{
    arr_t *p = x->p;
    partners_t *pp = x->partners;
    while (x->next_partner < pp->n) {
        const plist_t *pl = &pp->v[x->next_partner];
        if (pattern != NULL && (pl->pattern == pattern ||
                                agg_bytes_cmp(pl->pattern, pl->pattern_len, pattern, len) > 0)) {
            return;
        }
        arr_text(&p[FLUSH_P_L_PATTERN], pl->pattern, pl->pattern_len);
        arr_int(&p[FLUSH_P_L_N_AGENTS], 0);
        arr_int(&p[FLUSH_P_L_AGENTS_LEN], 0);
        pg_buf_put(&p[FLUSH_P_X_DATA].b, pp->data.data + pl->off, pl->len);
        arr_int(&p[FLUSH_P_L_N_PARTNERS], (int64_t)pl->n);
        arr_int(&p[FLUSH_P_L_N_LOW], (int64_t)pl->n_low);
        arr_int(&p[FLUSH_P_L_PARTNERS_LEN], (int64_t)pl->len);
        arr_int(&p[FLUSH_P_L_PARTNERS_MAX], pl->max);
        x->next_partner++;
    }
}

static void end_pattern(lists_ctx_t *x)
{
    arr_t *p = x->p;
    arr_text(&p[FLUSH_P_P_ID], x->cur, x->cur_len);
    arr_text(&p[FLUSH_P_P_TYPE], x->cur_type, x->cur_type_len);
    arr_int(&p[FLUSH_P_P_COUNT], x->count);
    arr_int(&p[FLUSH_P_P_FIRST], x->first);
    arr_int(&p[FLUSH_P_P_LAST], x->last);
    arr_text(&p[FLUSH_P_L_PATTERN], x->cur, x->cur_len);
    arr_int(&p[FLUSH_P_L_N_AGENTS], (int64_t)x->entries);
    arr_int(&p[FLUSH_P_L_AGENTS_LEN], (int64_t)(p[FLUSH_P_X_DATA].b.len - x->start));
    /* its co-occurrence list, if it has one: the partner lists are in the same byte order */
    partners_t *pp = x->partners;
    const plist_t *pl = x->next_partner < pp->n ? &pp->v[x->next_partner] : NULL;
    if (pl != NULL && pl->pattern == x->cur) {
        pg_buf_put(&p[FLUSH_P_X_DATA].b, pp->data.data + pl->off, pl->len);
        arr_int(&p[FLUSH_P_L_N_PARTNERS], (int64_t)pl->n);
        arr_int(&p[FLUSH_P_L_N_LOW], (int64_t)pl->n_low);
        arr_int(&p[FLUSH_P_L_PARTNERS_LEN], (int64_t)pl->len);
        arr_int(&p[FLUSH_P_L_PARTNERS_MAX], pl->max);
        x->next_partner++;
    } else {
        arr_int(&p[FLUSH_P_L_N_PARTNERS], 0);
        arr_int(&p[FLUSH_P_L_N_LOW], 0);
        arr_int(&p[FLUSH_P_L_PARTNERS_LEN], 0);
        arr_int(&p[FLUSH_P_L_PARTNERS_MAX], 0);
    }
}

/* First pass, uses by pattern then agent: each pattern's totals and list of agents, the keys
 * not known to be committed, and the (agent, pattern_type) sums. */
static void by_pattern_cb(const agg_use_t *u, void *ud)
{
    lists_ctx_t *x = ud;
    if (u->pattern != x->cur) {
        if (x->cur != NULL) {
            end_pattern(x);
        }
        partners_only(x, u->pattern, u->pattern_len);
        x->cur = u->pattern;
        x->cur_len = u->pattern_len;
        size_t tl = 0;
        const char *t = known_type(x->known, u->pattern, u->pattern_len, &tl);
        /* not read: take "unknown"; if the catalog says otherwise, pt_flush says PT410 */
        x->cur_type = t != NULL ? t : "unknown";
        x->cur_type_len = t != NULL ? (uint32_t)tl : 7;
        x->count = 0;
        x->first = INT64_MAX;
        x->last = INT64_MIN;
        x->entries = 0;
        x->start = x->p[FLUSH_P_X_DATA].b.len;
        cooc_writer_init_v(&x->w, &x->p[FLUSH_P_X_DATA].b, COOC_USAGE_VERSION);
    }
    x->count += u->count;
    x->first = u->first_us < x->first ? u->first_us : x->first;
    x->last = u->last_us > x->last ? u->last_us : x->last;
    x->entries++;
    cooc_write_usage(&x->w, u->agent, u->agent_len, u->count, u->first_us, u->last_us);
    if (!known_key(x->known, u->pattern, u->pattern_len, u->agent, u->agent_len)) {
        arr_text(&x->p[FLUSH_P_K_PATTERN], u->pattern, u->pattern_len);
        arr_text(&x->p[FLUSH_P_K_AGENT], u->agent, u->agent_len);
        known_stage(x->known, u->pattern, u->pattern_len, u->agent, u->agent_len);
    }
    ytot_t *y = ymap_get(&x->y, u->agent, u->agent_len, x->cur_type, x->cur_type_len);
    y->count += u->count;
    y->first = u->first_us < y->first ? u->first_us : y->first;
    y->last = u->last_us > y->last ? u->last_us : y->last;
}

static void end_agent(lists_ctx_t *x)
{
    arr_t *p = x->p;
    arr_text(&p[FLUSH_P_A_AGENT], x->cur, x->cur_len);
    arr_int(&p[FLUSH_P_A_COUNT], x->count);
    arr_int(&p[FLUSH_P_A_FIRST], x->first);
    arr_int(&p[FLUSH_P_A_LAST], x->last);
    arr_text(&p[FLUSH_P_M_AGENT], x->cur, x->cur_len);
    arr_int(&p[FLUSH_P_M_N], (int64_t)x->entries);
    arr_int(&p[FLUSH_P_M_LEN], (int64_t)(p[FLUSH_P_X_DATA].b.len - x->start));
}

/* Second pass, uses by agent then pattern: each agent's totals and list of patterns. */
static void by_agent_cb(const agg_use_t *u, void *ud)
{
    lists_ctx_t *x = ud;
    if (u->agent != x->cur) {
        if (x->cur != NULL) {
            end_agent(x);
        }
        x->cur = u->agent;
        x->cur_len = u->agent_len;
        x->count = 0;
        x->first = INT64_MAX;
        x->last = INT64_MIN;
        x->entries = 0;
        x->start = x->p[FLUSH_P_X_DATA].b.len;
        cooc_writer_init_v(&x->w, &x->p[FLUSH_P_X_DATA].b, COOC_USAGE_VERSION);
    }
    x->count += u->count;
    x->first = u->first_us < x->first ? u->first_us : x->first;
    x->last = u->last_us > x->last ? u->last_us : x->last;
    x->entries++;
    cooc_write_usage(&x->w, u->pattern, u->pattern_len, u->count, u->first_us, u->last_us);
}

static void hour_cb(const agg_hour_t *h, void *ud)
{
    arr_t *p = ud;
    arr_text(&p[FLUSH_P_H_PATTERN], h->pattern, h->pattern_len);
    arr_int(&p[FLUSH_P_H_HOUR], h->hour);
    arr_int(&p[FLUSH_P_H_COUNT], h->count);
}

/* Text for a dead letter's detail: PostgreSQL text must be UTF-8. */
static void put_detail(arr_t *a, const char *s)
{
    arr_sep(a);
    if (s == NULL) {
        pg_buf_put(&a->b, "NULL", 4);
        return;
    }
    size_t n = strlen(s);
    if (text_utf8_valid(s, n)) {
        pg_array_text(&a->b, s, n);
        return;
    }
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    }
    pg_array_text(&a->b, copy, n);
    free(copy);
}

int flush_build(const agg_t *a, const char *group, bool durable, known_t *known, char **values,
                int *lengths)
{
    arr_t p[FLUSH_NPARAMS];
    for (int i = 0; i < FLUSH_NPARAMS; i++) {
        pg_buf_init(&p[i].b);
        p[i].n = 0;
        if (i != FLUSH_P_GROUP && i != FLUSH_P_X_DATA && i != FLUSH_P_DURABLE) {
            pg_buf_putc(&p[i].b, '{');
        }
    }
    pg_buf_put(&p[FLUSH_P_GROUP].b, group, strlen(group));
    pg_buf_put(&p[FLUSH_P_DURABLE].b, durable ? "true" : "false", durable ? 4 : 5);
    for (size_t i = 0; i < agg_n_offsets(a); i++) {
        const agg_offset_t *o = agg_offset_at(a, i);
        arr_text(&p[FLUSH_P_O_TOPIC], o->topic, strlen(o->topic));
        arr_int(&p[FLUSH_P_O_PART], o->partition);
        arr_int(&p[FLUSH_P_O_EXPECTED], o->expected);
        arr_int(&p[FLUSH_P_O_NEXT], o->next);
    }
    agg_each_hour(a, hour_cb, p);
    /* The co-occurrence lists first (their own buffer), then per pattern its agents and its
     * co-occurrence list into x_data, then per agent its patterns. */
    partners_t partners = {0};
    pg_buf_init(&partners.data);
    agg_each_side(a, side_cb, &partners);
    if (partners.n > 0) {
        partners.v[partners.n - 1].len = partners.data.len - partners.v[partners.n - 1].off;
    }
    lists_ctx_t x = {.p = p, .known = known, .partners = &partners};
    agg_each_use_sorted(a, false, by_pattern_cb, &x);
    if (x.cur != NULL) {
        end_pattern(&x);
    }
    partners_only(&x, NULL, 0);
    pg_buf_free(&partners.data);
    free(partners.v);
    for (size_t i = 0; i < x.y.cap; i++) {
        const ytot_t *y = &x.y.slots[i];
        if (y->agent != NULL) {
            arr_text(&p[FLUSH_P_Y_AGENT], y->agent, y->agent_len);
            arr_text(&p[FLUSH_P_Y_TYPE], y->type, y->type_len);
            arr_int(&p[FLUSH_P_Y_COUNT], y->count);
            arr_int(&p[FLUSH_P_Y_FIRST], y->first);
            arr_int(&p[FLUSH_P_Y_LAST], y->last);
        }
    }
    free(x.y.slots);
    x.cur = NULL;
    agg_each_use_sorted(a, true, by_agent_cb, &x);
    if (x.cur != NULL) {
        end_agent(&x);
    }
    for (size_t i = 0; i < agg_n_topics(a); i++) {
        const agg_topic_t *t = agg_topic_at(a, i);
        arr_text(&p[FLUSH_P_T_TOPIC], t->topic, strlen(t->topic));
        arr_int(&p[FLUSH_P_T_EVENTS], t->events);
        arr_int(&p[FLUSH_P_T_WITHOUT], t->without_patterns);
        arr_int(&p[FLUSH_P_T_DEAD], t->dead_letters);
        arr_int(&p[FLUSH_P_T_FLAGGED], t->flagged);
        arr_int(&p[FLUSH_P_T_WITH], t->with_patterns);
        arr_int(&p[FLUSH_P_T_OVER], t->over_pair_limit);
        arr_int(&p[FLUSH_P_T_DUPS], t->duplicates);
    }
    for (size_t i = 0; i < agg_n_dead(a); i++) {
        const agg_dead_t *d = agg_dead_at(a, i);
        arr_text(&p[FLUSH_P_D_TOPIC], d->topic, strlen(d->topic));
        arr_int(&p[FLUSH_P_D_PART], d->partition);
        arr_int(&p[FLUSH_P_D_OFFSET], d->offset);
        arr_text(&p[FLUSH_P_D_REASON], d->reason, strlen(d->reason));
        put_detail(&p[FLUSH_P_D_DETAIL], d->detail);
        arr_sep(&p[FLUSH_P_D_PAYLOAD]);
        if (d->payload != NULL) {
            pg_array_bytea(&p[FLUSH_P_D_PAYLOAD].b, d->payload, d->payload_len);
        } else {
            pg_buf_put(&p[FLUSH_P_D_PAYLOAD].b, "NULL", 4); /* none kept */
        }
        arr_int(&p[FLUSH_P_D_SIZE], (int64_t)d->payload_size);
        arr_sep(&p[FLUSH_P_D_HASH]);
        pg_buf_uuid(&p[FLUSH_P_D_HASH].b, d->hash);
    }
    for (int i = 0; i < FLUSH_NPARAMS; i++) {
        if (i != FLUSH_P_GROUP && i != FLUSH_P_X_DATA && i != FLUSH_P_DURABLE) {
            pg_array_end(&p[i].b);
        }
        if (p[i].b.data == NULL) {
            pg_buf_putc(&p[i].b, '\0'); /* an empty x_data: a value, not NULL */
            p[i].b.len = 0;
        }
        values[i] = p[i].b.data;
        lengths[i] = (int)p[i].b.len;
    }
    return FLUSH_NPARAMS;
}

void flush_build_free(char **values, int n)
{
    for (int i = 0; i < n; i++) {
        free(values[i]);
    }
}
