/* fold_job: one fold's merge, the part without libpq or the event loop: the rows a fold
 * fetched (owners' folded and pending partner lists, cooc.h) merged into one list per owner and
 * written out as the parameters of the fold's writes, and pattern_cooccurrence_top kept current
 * from the pairs that changed. fold.c runs it on its worker thread; owns nothing but the job's
 * buffers (the fetched PGresult is the job's to free). */
#ifndef PT_FOLD_JOB_H
#define PT_FOLD_JOB_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pg_buf.h"

/* A value of the fetched rows: it points into their PGresult, which the job keeps. */
typedef struct {
    const char *p;
    uint32_t len;
} fold_ref_t;

/* A fetched row: an owner's folded row or one of its pending ones, with its lists (len 0:
 * none): l1 its usage list (a pattern's agents, an agent's patterns), l2 a pattern's partners. */
typedef struct {
    char kind; /* 'p' or 'a' */
    fold_ref_t id;
    fold_ref_t l1, l2;
    bool folded;
} fold_row_t;

typedef struct {
    const char *p1, *p2;
    uint32_t l1, l2;
    int64_t count, last_us;
    bool fresh; /* not in the top before this merge */
} fold_pair_t;

/* What the loop hands the worker and gets back. */
typedef struct {
    /* in */
    PGresult *fetched; /* the rows (binary): their patterns, agents and lists, not copied */
    fold_row_t *rows;
    size_t n_rows;
    pg_buf_t topraw;  /* the top's pattern IDs */
    fold_pair_t *top; /* p1/p2 are offsets into topraw until the worker resolves them */
    size_t n_top;
    size_t keep;
    /* out */
    pg_buf_t pat, na, al, np, low, pl, adata, pdata; /* write_p_sql's parameters */
    pg_buf_t agent, an, alen, gdata;                 /* write_a_sql's */
    pg_buf_t tp1, tp2, tcnt, tlast;                  /* topw_sql's */
    bool top_changed;
    int64_t patterns, agents;
    char err[256];
    int rc;
} fold_job_t;

void fold_job_init(fold_job_t *j);
/* Frees the job's buffers, rows and fetched result, and empties it. */
void fold_job_free(fold_job_t *j);
/* The merge: j->rows (any order) in, the write parameters out; j->rc 0, or -1 with j->err. */
void fold_job_run(fold_job_t *j);

#endif
