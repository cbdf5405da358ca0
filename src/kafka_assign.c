#include "kafka_impl.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pg_buf.h"

/* An offset lookup in flight, for the assignment of `generation` (a later one makes it stale). */
typedef struct {
    kafka_t *k;
    uint64_t generation;
} lookup_t;

static void first_assignment_done(kafka_t *k)
{
    void (*fn)(void *) = k->first_assigned;
    k->first_assigned = NULL;
    if (fn) {
        fn(k->first_assigned_ud);
    }
}

part_t *kafka_find_part(kafka_t *k, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < k->n_parts; i++) {
        part_t *p = &k->parts[i];
        if (p->partition == partition && strcmp(p->topic, topic) == 0) {
            return p;
        }
    }
    return NULL;
}

void kafka_clear_parts(kafka_t *k)
{
    for (size_t i = 0; i < k->n_parts; i++) {
        free(k->parts[i].topic);
    }
    k->n_parts = 0;
}

static void add_part(kafka_t *k, const char *topic, int32_t partition)
{
    if (k->n_parts == k->cap_parts) {
        k->cap_parts = k->cap_parts ? k->cap_parts * 2 : 16;
        part_t *np = realloc(k->parts, k->cap_parts * sizeof(part_t));
        if (np == NULL) {
            abort();
        }
        k->parts = np;
    }
    int idx = rules_find(k->rules, topic);
    part_t *p = &k->parts[k->n_parts++];
    p->topic = strdup(topic);
    p->partition = partition;
    p->topic_idx = idx < 0 ? NO_RULE : (size_t)idx;
    p->state = P_PENDING;
    p->next = -1;
    p->batch_start = -1;
}

/* Positions every active partition at its `next` offset with one assign() call: used after an
 * assignment, a conflict and a back-pressure pause, so stale prefetched messages are dropped by
 * librdkafka and nothing in between is skipped. */
void kafka_apply_assignment(kafka_t *k, bool after_pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)k->n_parts);
    int64_t start = strcmp(k->cfg->kafka_start_offset, "latest") == 0 ? RD_KAFKA_OFFSET_END
                                                                      : RD_KAFKA_OFFSET_BEGINNING;
    for (size_t i = 0; i < k->n_parts; i++) {
        part_t *p = &k->parts[i];
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
        tp->offset = p->next >= 0 ? p->next : start;
        if (p->next < 0 && after_pause && start == RD_KAFKA_OFFSET_BEGINNING) {
            /* Re-applied after a back-pressure pause, a partition not consumed yet: librdkafka
             * 2.0 left such a partition, assigned at a logical offset while paused, without a
             * fetch position for good (a bench run stalled on it). Its first offset, asked of
             * the leader, is concrete. A rare path (a pause lasts seconds), so a blocking ask. */
            int64_t lo = -1, hi = -1;
            if (rd_kafka_query_watermark_offsets(k->rk, p->topic, p->partition, &lo, &hi, 2000) ==
                    RD_KAFKA_RESP_ERR_NO_ERROR &&
                lo >= 0) {
                tp->offset = lo;
            }
        }
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(k->rk, l);
    if (e) {
        log_error("kafka: assign failed: %s", rd_kafka_err2str(e));
    } else {
        log_info("kafka: consuming %zu partitions from the offsets stored in PostgreSQL",
                 k->n_parts);
    }
    if (!k->paused) {
        rd_kafka_resume_partitions(k->rk, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void lookup_cb(pg_conn_t *c, PGresult *res, const char *err, void *ud)
{
    (void)c;
    lookup_t *lk = ud;
    kafka_t *k = lk->k;
    uint64_t gen = lk->generation;
    free(lk);
    k->lookup_running = false;
    if (gen != k->generation || k->closing) {
        /* The assignment changed while the query ran: look again for the new one. */
        if (!k->closing && k->n_parts > 0) {
            kafka_start_lookup(k);
        }
        return;
    }
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        log_warn("kafka: cannot read stored offsets (%s); retrying in 1 s",
                 res ? PQresultErrorMessage(res) : err);
        struct timeval tv = {1, 0};
        evtimer_add(k->ev_retry, &tv);
        return;
    }
    for (size_t i = 0; i < k->n_parts; i++) {
        k->parts[i].next = -1;
    }
    for (int r = 0; r < PQntuples(res); r++) {
        part_t *p = kafka_find_part(k, PQgetvalue(res, r, 0), atoi(PQgetvalue(res, r, 1)));
        if (p) {
            p->next = strtoll(PQgetvalue(res, r, 2), NULL, 10);
        }
    }
    for (size_t i = 0; i < k->n_parts; i++) {
        k->parts[i].batch_start = k->parts[i].next;
        k->parts[i].state = P_ACTIVE;
    }
    kafka_apply_assignment(k, false);
    first_assignment_done(k);
}

void kafka_start_lookup(kafka_t *k)
{
    if (k->lookup_running) {
        return; /* its callback sees the new generation and looks again */
    }
    pg_buf_t topics, parts;
    pg_buf_init(&topics);
    pg_buf_init(&parts);
    pg_buf_putc(&topics, '{');
    pg_buf_putc(&parts, '{');
    for (size_t i = 0; i < k->n_parts; i++) {
        if (i > 0) {
            pg_array_next(&topics);
            pg_array_next(&parts);
        }
        pg_array_text(&topics, k->parts[i].topic, strlen(k->parts[i].topic));
        pg_array_int(&parts, k->parts[i].partition);
    }
    pg_array_end(&topics);
    pg_array_end(&parts);
    const char *vals[3] = {k->cfg->kafka_group_id, topics.data, parts.data};
    lookup_t *lk = malloc(sizeof *lk);
    if (lk == NULL) {
        abort();
    }
    lk->k = k;
    lk->generation = k->generation;
    k->lookup_running = true;
    if (pg_conn_query(k->pgc,
                      "SELECT o.topic, o.partition, o.next_offset FROM usage_consumer_offsets o "
                      "JOIN unnest($2::text[], $3::int[]) AS x(topic, part) "
                      "ON o.topic = x.topic AND o.partition = x.part WHERE o.group_id = $1",
                      3, vals, NULL, 30000, lookup_cb, lk) != 0) {
        k->lookup_running = false;
        free(lk);
        struct timeval tv = {1, 0};
        evtimer_add(k->ev_retry, &tv);
    }
    pg_buf_free(&topics);
    pg_buf_free(&parts);
}

void kafka_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kafka_t *k = arg;
    if (!k->closing && k->n_parts > 0) {
        kafka_start_lookup(k);
    }
}

static void finish_revoke(kafka_t *k)
{
    if (!k->revoking) {
        return;
    }
    k->revoking = false;
    evtimer_del(k->ev_revoke_timeout);
    rd_kafka_assign(k->rk, NULL);
    log_info("kafka: partitions released");
}

static void revoke_drained_cb(void *ud)
{
    finish_revoke(ud);
}

void kafka_revoke_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    log_warn("kafka: the flush before releasing partitions is taking too long; releasing them "
             "(their batch stays queued, and PostgreSQL's offset check keeps it exact)");
    finish_revoke(arg);
}

void kafka_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t *partitions, void *opaque)
{
    (void)rk;
    kafka_t *k = opaque;
    k->rebalances++;
    k->generation++;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("kafka: %d partitions assigned; reading their offsets from PostgreSQL",
                 partitions->cnt);
        kafka_clear_parts(k);
        for (int i = 0; i < partitions->cnt; i++) {
            add_part(k, partitions->elems[i].topic, partitions->elems[i].partition);
        }
        k->brokers_down = false;
        if (k->n_parts == 0) {
            rd_kafka_assign(k->rk, partitions);
            first_assignment_done(k);
            return;
        }
        /* assign() is called once the offsets are known (librdkafka waits for it). */
        kafka_start_lookup(k);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        log_info("kafka: %d partitions revoked; flushing before releasing them", partitions->cnt);
        /* Record how far every partition got into the filling batch before forgetting them. */
        if (k->ingest) {
            ingest_note_offsets(k->ingest);
        }
        kafka_clear_parts(k);
        k->revoking = true;
        struct timeval tv = {(time_t)(k->cfg->flush_timeout_ms / 1000), 0};
        evtimer_add(k->ev_revoke_timeout, &tv);
        if (k->ingest) {
            ingest_drain(k->ingest, revoke_drained_cb, k);
        } else {
            finish_revoke(k);
        }
        return;
    }
    log_error("kafka: rebalance error: %s", rd_kafka_err2str(err));
    kafka_clear_parts(k);
    rd_kafka_assign(k->rk, NULL);
}
