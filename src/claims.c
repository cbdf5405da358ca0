#include "claims.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void claims_init(claims_t *c)
{
    memset(c, 0, sizeof *c);
    for (int i = 0; i < CLAIMS_NPARAMS; i++) {
        pg_buf_init(&c->p[i]);
    }
}

void claims_free(claims_t *c)
{
    for (int i = 0; i < CLAIMS_NPARAMS; i++) {
        pg_buf_free(&c->p[i]);
    }
    free(c->order);
    c->order = NULL;
}

void claims_drop_params(claims_t *c)
{
    for (int i = 0; i < CLAIMS_NPARAMS; i++) {
        pg_buf_free(&c->p[i]);
        pg_buf_init(&c->p[i]);
    }
}

static const agg_t *sort_agg; /* qsort has no context argument; claims run on the loop only */

static int cmp_held(const void *x, const void *y)
{
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    int k = memcmp(agg_held_at(sort_agg, i)->key, agg_held_at(sort_agg, j)->key, 16);
    /* within a key, arrival order: the first copy is the one claimed when none holds it */
    return k != 0 ? k : (i < j ? -1 : i > j);
}

static void put_claim(pg_buf_t *p, const agg_hold_t *h, bool first)
{
    if (!first) {
        for (int i = 0; i < 4; i++) {
            pg_array_next(&p[i]);
        }
    }
    pg_buf_uuid(&p[0], h->key);
    pg_array_int(&p[1], h->partition);
    pg_array_int(&p[2], h->offset);
    pg_array_int(&p[3], h->window_s);
}

void claims_build(claims_t *c, const agg_t *a, const char *values[CLAIMS_NPARAMS])
{
    size_t n = agg_n_held(a);
    free(c->order);
    c->order = malloc((n ? n : 1) * sizeof(size_t));
    size_t *rep = malloc((n ? n : 1) * sizeof(size_t));
    if (c->order == NULL || rep == NULL) {
        abort();
    }
    size_t *all = c->order;
    for (size_t i = 0; i < n; i++) {
        all[i] = i;
    }
    sort_agg = a;
    qsort(all, n, sizeof(size_t), cmp_held);
    sort_agg = NULL;
    for (int i = 0; i < CLAIMS_NPARAMS; i++) {
        pg_buf_reset(&c->p[i]);
        pg_buf_putc(&c->p[i], '{');
    }
    /* singles keep their place at the front of order; repeats are gathered in rep */
    size_t ns = 0, nr = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && memcmp(agg_held_at(a, all[i])->key, agg_held_at(a, all[j])->key, 16) == 0) {
            j++;
        }
        for (size_t k = i; k < j; k++) {
            if (j - i == 1) {
                put_claim(&c->p[0], agg_held_at(a, all[k]), ns == 0);
                all[ns++] = all[k];
            } else {
                put_claim(&c->p[4], agg_held_at(a, all[k]), nr == 0);
                rep[nr++] = all[k];
            }
        }
        i = j;
    }
    memcpy(all + ns, rep, nr * sizeof(size_t));
    free(rep);
    c->n_single = ns;
    c->n = ns + nr;
    for (int i = 0; i < CLAIMS_NPARAMS; i++) {
        pg_array_end(&c->p[i]);
        values[i] = c->p[i].data;
    }
}

int claims_read(const claims_t *c, const PGresult *res, bool *won, char *err, size_t errlen)
{
    memset(won, 0, c->n * sizeof(bool));
    if (PQntuples(res) != 1 || PQnfields(res) != 1) {
        snprintf(err, errlen, "pt_claim_events answered %d rows of %d columns", PQntuples(res),
                 PQnfields(res));
        return -1;
    }
    const char *s = PQgetvalue(res, 0, 0);
    if (*s++ != '{') {
        snprintf(err, errlen, "pt_claim_events answered no array");
        return -1;
    }
    while (*s != '}' && *s != '\0') {
        char *end;
        long long ord = strtoll(s, &end, 10);
        if (end == s || ord < 1 || (size_t)ord > c->n || won[c->order[ord - 1]]) {
            snprintf(err, errlen, "pt_claim_events answered a bad ordinal near '%.20s'", s);
            return -1;
        }
        won[c->order[ord - 1]] = true;
        s = *end == ',' ? end + 1 : end;
    }
    if (*s != '}') {
        snprintf(err, errlen, "pt_claim_events answered an unterminated array");
        return -1;
    }
    return 0;
}
