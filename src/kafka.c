#include "kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kafka_wake.h"
#include "log.h"
#include "pg.h"
#include "pg_buf.h"

/* Messages handled per loop turn. Each goes through a Lua rule and into the batch (0.15-0.8 ms
 * per message measured at 100,000 patterns with co-occurrence on), so a turn stays within a
 * few milliseconds and HTTP requests waiting behind it are not delayed by more; the read event
 * is re-armed while messages remain, and the loop's dispatch slice (main.c) lets what arrived
 * meanwhile run between turns. */
#define KAFKA_BATCH 32
/* The fetch wake-up (kafka_wake.h): every KAFKA_WAKE_MS while more than KAFKA_WAKE_BACKLOG
 * messages wait in Kafka beyond what was counted. */
#define KAFKA_WAKE_MS 50
#define KAFKA_WAKE_BACKLOG 1000
/* Back-pressure, first step: while the batches are over max_buffer_mb the engine leaves what
 * librdkafka fetched in its queue (bounded by queued.max.messages.kbytes, which stops the
 * fetching) and looks again every KAFKA_HOLD_CHECK_MS: a flush in flight usually makes room
 * within a second. Only after KAFKA_HOLD_MS (PostgreSQL slow or down) are the partitions paused,
 * which drops the queue (refetched later) but lets the engine poll again: librdkafka leaves the
 * group of a consumer that does not poll for max.poll.interval.ms. */
#define KAFKA_HOLD_CHECK_MS 20
#define KAFKA_HOLD_MS 3000
#define NO_RULE ((size_t)-1) /* a partition of a topic the current rules no longer have */

typedef enum { P_PENDING, P_ACTIVE } part_state_t;

typedef struct {
    char *topic;
    int32_t partition;
    size_t topic_idx;
    part_state_t state;
    int64_t next;        /* next offset to count; -1: no stored offset and nothing consumed */
    int64_t batch_start; /* `next` when the filling batch began: what PostgreSQL holds */
} part_t;

struct kafka {
    struct event_base *base;
    const config_t *cfg;
    rules_t *rules;
    ingest_t *ingest;
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    kafka_wake_t *wake;
    int pipefd[2];
    struct event *ev_read;
    struct event *ev_retry;    /* retries the offset lookup */
    struct event *ev_pressure; /* re-checks back-pressure */
    struct event *ev_hold;     /* re-checks back-pressure while holding the queue */
    bool holding;
    bool hold_expired; /* held for KAFKA_HOLD_MS: the next message pauses */
    struct timespec hold_since;
    struct event *ev_revoke_timeout;
    pg_conn_t *pgc;
    part_t *parts;
    size_t n_parts, cap_parts;
    uint64_t generation; /* bumped by every (re)assignment; stale lookups are ignored */
    bool lookup_running;
    bool revoking;
    bool paused;
    bool closing;
    bool brokers_down;
    uint64_t rebalances;
    void (*close_done)(void *ud);
    void *close_ud;
    void (*first_assigned)(void *ud); /* kafka_on_first_assignment; NULL once called */
    void *first_assigned_ud;
    rd_kafka_message_t *msgs[KAFKA_BATCH];
};

static void start_lookup(kafka_t *k);

static void first_assignment_done(kafka_t *k)
{
    void (*fn)(void *) = k->first_assigned;
    k->first_assigned = NULL;
    if (fn) {
        fn(k->first_assigned_ud);
    }
}

static void rd_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    log_level_t l = level <= 3   ? LOG_ERROR
                    : level <= 5 ? LOG_WARN
                    : level == 6 ? LOG_INFO
                                 : LOG_DEBUG;
    if (l >= log_get_level()) {
        log_msg(l, "kafka %s: %s", fac, buf);
    }
}

static void rd_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    kafka_t *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        k->brokers_down = true;
    }
    log_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

/* librdkafka's statistics (every 5 s) say which brokers are connected: counting brokers in
 * state UP is the one signal that also comes back when they do. Error events alone do not
 * (ALL_BROKERS_DOWN is not raised for every outage, and nothing says "up again"). */
static int rd_stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    (void)rk;
    (void)len;
    kafka_t *k = opaque;
    int up = 0;
    const char *p = strstr(json, "\"brokers\":");
    while (p && (p = strstr(p, "\"nodeid\":")) != NULL) {
        p += 9;
        long id = strtol(p, NULL, 10);
        const char *st = strstr(p, "\"state\":\"");
        if (st == NULL) {
            break;
        }
        if (id >= 0 && strncmp(st + 9, "UP\"", 3) == 0) {
            up++;
        }
        p = st + 9;
    }
    k->brokers_down = up == 0;
    return 0; /* librdkafka frees json */
}

static part_t *find_part(kafka_t *k, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < k->n_parts; i++) {
        part_t *p = &k->parts[i];
        if (p->partition == partition && strcmp(p->topic, topic) == 0) {
            return p;
        }
    }
    return NULL;
}

static void clear_parts(kafka_t *k)
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
static void apply_assignment(kafka_t *k, bool after_pause)
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

typedef struct {
    kafka_t *k;
    uint64_t generation;
} lookup_t;

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
            start_lookup(k);
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
        part_t *p = find_part(k, PQgetvalue(res, r, 0), atoi(PQgetvalue(res, r, 1)));
        if (p) {
            p->next = strtoll(PQgetvalue(res, r, 2), NULL, 10);
        }
    }
    for (size_t i = 0; i < k->n_parts; i++) {
        k->parts[i].batch_start = k->parts[i].next;
        k->parts[i].state = P_ACTIVE;
    }
    apply_assignment(k, false);
    first_assignment_done(k);
}

static void start_lookup(kafka_t *k)
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

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kafka_t *k = arg;
    if (!k->closing && k->n_parts > 0) {
        start_lookup(k);
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

static void revoke_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    log_warn("kafka: the flush before releasing partitions is taking too long; releasing them "
             "(their batch stays queued, and PostgreSQL's offset check keeps it exact)");
    finish_revoke(arg);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *partitions, void *opaque)
{
    (void)rk;
    kafka_t *k = opaque;
    k->rebalances++;
    k->generation++;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("kafka: %d partitions assigned; reading their offsets from PostgreSQL",
                 partitions->cnt);
        clear_parts(k);
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
        start_lookup(k);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        log_info("kafka: %d partitions revoked; flushing before releasing them", partitions->cnt);
        /* Record how far every partition got into the filling batch before forgetting them. */
        if (k->ingest) {
            ingest_note_offsets(k->ingest);
        }
        clear_parts(k);
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
    clear_parts(k);
    rd_kafka_assign(k->rk, NULL);
}

static void fill_meta(rule_meta_t *m, const rd_kafka_message_t *rkm, const char *topic)
{
    m->topic = topic;
    m->partition = rkm->partition;
    m->offset = rkm->offset;
    m->key = rkm->key;
    m->key_len = rkm->key_len;
    rd_kafka_timestamp_type_t tt;
    m->timestamp_ms = rd_kafka_message_timestamp(rkm, &tt);
    m->n_headers = 0;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(rkm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        const char *name;
        const void *val;
        size_t sz;
        for (size_t i = 0;
             i < RULES_MAX_HEADERS && rd_kafka_header_get_all(hdrs, i, &name, &val, &sz) == 0;
             i++) {
            m->header_names[i] = name;
            m->header_values[i] = val;
            m->header_lens[i] = sz;
            m->n_headers++;
        }
    }
}

static void pause_all(kafka_t *k)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(k->rk, &l) == RD_KAFKA_RESP_ERR_NO_ERROR && l) {
        rd_kafka_pause_partitions(k->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
}

static void pressure_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kafka_t *k = arg;
    if (k->closing || !k->paused) {
        return;
    }
    if (!ingest_accepting(k->ingest)) {
        struct timeval tv = {0, 50000};
        evtimer_add(k->ev_pressure, &tv);
        return;
    }
    k->paused = false;
    log_info("kafka: buffer below max_buffer_mb again; consuming");
    bool all_active = true;
    for (size_t i = 0; i < k->n_parts; i++) {
        all_active = all_active && k->parts[i].state == P_ACTIVE;
    }
    if (k->n_parts > 0 && all_active && !k->revoking) {
        apply_assignment(k, true);
    }
}

static void handle_message(kafka_t *k, rd_kafka_message_t *rkm)
{
    if (rkm->err) {
        if (rkm->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            log_warn("kafka: %s", rd_kafka_message_errstr(rkm));
        }
        return;
    }
    const char *topic = rd_kafka_topic_name(rkm->rkt);
    part_t *p = find_part(k, topic, rkm->partition);
    if (p == NULL || p->state != P_ACTIVE || p->topic_idx == NO_RULE || k->paused || k->revoking ||
        k->closing) {
        return; /* not ours to count now; apply_assignment repositions before we count again */
    }
    if (p->next >= 0 && rkm->offset < p->next) {
        return; /* already counted */
    }
    if (k->hold_expired && !ingest_accepting(k->ingest)) {
        /* Back-pressure held the queue for KAFKA_HOLD_MS: stop fetching; this message and
         * everything after it are fetched again from p->next when the buffer has room. (Before
         * that, the rest of a read batch is counted: at most KAFKA_BATCH messages over.) */
        k->paused = true;
        pause_all(k);
        log_warn("kafka: unflushed data over max_buffer_mb (PostgreSQL slow or down?); pausing");
        struct timeval tv = {0, 50000};
        evtimer_add(k->ev_pressure, &tv);
        return;
    }
    rule_meta_t meta;
    fill_meta(&meta, rkm, topic);
    ingest_msg_t m = {
        .topic_idx = p->topic_idx,
        .topic = p->topic,
        .partition = rkm->partition,
        .offset = rkm->offset,
        .payload = rkm->payload ? rkm->payload : "",
        .len = rkm->payload ? rkm->len : 0,
        .meta = &meta,
        .kafka_ts_ms = meta.timestamp_ms,
    };
    ingest_message(k->ingest, &m);
    p->next = rkm->offset + 1;
}

/* Messages waiting for this consumer: the partitions' high watermarks (as librdkafka last
 * fetched them, no request) beyond what was counted. */
static int64_t backlog(kafka_t *k)
{
    int64_t n = 0;
    for (size_t i = 0; i < k->n_parts; i++) {
        const part_t *p = &k->parts[i];
        int64_t lo = -1, hi = -1;
        if (p->state == P_ACTIVE && p->next >= 0 &&
            rd_kafka_get_watermark_offsets(k->rk, p->topic, p->partition, &lo, &hi) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            hi > p->next) {
            n += hi - p->next;
        }
    }
    return n;
}

static void hold_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kafka_t *k = arg;
    event_active(k->ev_read, EV_READ, 0);
}

/* Whether to leave the queue to librdkafka for now (KAFKA_HOLD_MS). */
static bool hold(kafka_t *k)
{
    if (k->closing || k->paused || k->ingest == NULL || ingest_accepting(k->ingest)) {
        k->holding = false;
        k->hold_expired = false;
        return false;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!k->holding) {
        k->holding = true;
        k->hold_since = now;
    }
    int64_t ms = (int64_t)(now.tv_sec - k->hold_since.tv_sec) * 1000 +
                 (now.tv_nsec - k->hold_since.tv_nsec) / 1000000;
    if (ms >= KAFKA_HOLD_MS) {
        k->hold_expired = true; /* handle_message pauses */
        return false;
    }
    struct timeval tv = {0, KAFKA_HOLD_CHECK_MS * 1000};
    evtimer_add(k->ev_hold, &tv);
    return true;
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    kafka_t *k = arg;
    char drain[256];
    while (read(fd, drain, sizeof drain) > 0) {
    }
    if (hold(k)) {
        return;
    }
    ssize_t n = rd_kafka_consume_batch_queue(k->q, 0, k->msgs, KAFKA_BATCH);
    for (ssize_t i = 0; i < n; i++) {
        handle_message(k, k->msgs[i]);
        rd_kafka_message_destroy(k->msgs[i]);
    }
    if (n > 0) {
        k->brokers_down = false;
        int64_t waiting = backlog(k);
        ingest_set_backlog(k->ingest, waiting);
        kafka_wake_set_backlogged(k->wake, waiting > KAFKA_WAKE_BACKLOG);
        ingest_poke(k->ingest);
    }
    if (k->closing && rd_kafka_consumer_closed(k->rk)) {
        if (k->close_done) {
            void (*done)(void *) = k->close_done;
            k->close_done = NULL;
            done(k->close_ud);
        }
        return;
    }
    if (n > 0) {
        /* More may be waiting: the pipe is written only when the queue goes from empty to
         * non-empty, and a batch can end early (at a statistics or rebalance event) with
         * messages still queued. Drain until a call returns nothing, after the loop has served
         * everything else (HTTP, timers). */
        event_active(k->ev_read, EV_READ, 0);
    }
}

kafka_t *kafka_new(struct event_base *base, const config_t *c, rules_t *rules, char *err,
                   size_t errlen)
{
    kafka_t *k = calloc(1, sizeof *k);
    char errstr[512];
    rd_kafka_conf_t *conf = NULL;
    if (k == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    k->pipefd[0] = k->pipefd[1] = -1;
    k->base = base;
    k->cfg = c;
    k->rules = rules;
    conf = rd_kafka_conf_new();
    struct {
        const char *k, *v;
    } props[] = {
        {"bootstrap.servers", c->kafka_bootstrap_servers},
        {"group.id", c->kafka_group_id},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", c->kafka_start_offset},
        /* Bounded prefetch: the engine's memory must not depend on the backlog. 2 MB is
         * enough because the fetch wake-up (kafka_wake.h) lets librdkafka 2.0 refill it as soon
         * as the engine made room, instead of a second later; small fetches keep what is held
         * beyond it small (BENCHMARKS.md). */
        {"queued.max.messages.kbytes", "2048"},
        {"fetch.max.bytes", "1048576"},
        {"max.partition.fetch.bytes", "262144"},
        {"partition.assignment.strategy", "range,roundrobin"},
        {"client.id", "patterntrack"},
        {"enable.partition.eof", "false"},
        /* Subscribed topics that appear later, and new partitions, are noticed within 10 s
         * instead of librdkafka's default 5 minutes. */
        {"topic.metadata.refresh.interval.ms", "10000"},
        {"statistics.interval.ms", "5000"},
    };
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
        if (rd_kafka_conf_set(conf, props[i].k, props[i].v, errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "kafka property %s: %s", props[i].k, errstr);
            goto fail;
        }
    }
    for (size_t i = 0; i < c->n_props; i++) {
        if (rd_kafka_conf_set(conf, c->kafka_properties[i].key, c->kafka_properties[i].value,
                              errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "kafka_properties[%s]: %s", c->kafka_properties[i].key, errstr);
            goto fail;
        }
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_log_cb(conf, rd_log_cb);
    rd_kafka_conf_set_error_cb(conf, rd_error_cb);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_stats_cb(conf, rd_stats_cb);
    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (k->rk == NULL) {
        snprintf(err, errlen, "kafka: %s", errstr);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    rd_kafka_poll_set_consumer(k->rk);
    k->q = rd_kafka_queue_get_consumer(k->rk);
    if (pipe2(k->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    rd_kafka_queue_io_event_enable(k->q, k->pipefd[1], "1", 1);
    k->ev_read = event_new(base, k->pipefd[0], EV_READ | EV_PERSIST, read_cb, k);
    k->ev_retry = evtimer_new(base, retry_cb, k);
    k->ev_pressure = evtimer_new(base, pressure_cb, k);
    k->ev_hold = evtimer_new(base, hold_cb, k);
    k->ev_revoke_timeout = evtimer_new(base, revoke_timeout_cb, k);
    k->pgc = pg_conn_new(base, c->database_url, "offsets");
    if (!k->ev_read || !k->ev_retry || !k->ev_pressure || !k->ev_hold || !k->ev_revoke_timeout ||
        !k->pgc) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    return k;
fail:
    if (conf) {
        rd_kafka_conf_destroy(conf);
    }
    kafka_free(k);
    return NULL;
}

void kafka_set_ingest(kafka_t *k, ingest_t *g)
{
    k->ingest = g;
}

void kafka_on_first_assignment(kafka_t *k, void (*fn)(void *ud), void *ud)
{
    k->first_assigned = fn;
    k->first_assigned_ud = ud;
}

static bool same_topics(rules_t *a, rules_t *b)
{
    if (rules_count(a) != rules_count(b)) {
        return false;
    }
    for (size_t i = 0; i < rules_count(a); i++) {
        if (rules_find(b, rules_topic(a, i)) < 0) {
            return false;
        }
    }
    return true;
}

static int subscribe(kafka_t *k, char *err, size_t errlen);

void kafka_set_rules(kafka_t *k, rules_t *rules)
{
    bool same = same_topics(k->rules, rules);
    k->rules = rules;
    for (size_t i = 0; i < k->n_parts; i++) {
        int idx = rules_find(rules, k->parts[i].topic);
        k->parts[i].topic_idx = idx < 0 ? NO_RULE : (size_t)idx;
    }
    if (!same && !k->closing) {
        char err[256];
        if (subscribe(k, err, sizeof err) != 0) {
            log_error("kafka: %s", err);
        } else {
            log_info("kafka: subscription changed to %zu topics", rules_count(rules));
        }
    }
}

static int subscribe(kafka_t *k, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)rules_count(k->rules));
    for (size_t i = 0; i < rules_count(k->rules); i++) {
        rd_kafka_topic_partition_list_add(l, rules_topic(k->rules, i), RD_KAFKA_PARTITION_UA);
    }
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        snprintf(err, errlen, "kafka subscribe: %s", rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

int kafka_start(kafka_t *k, char *err, size_t errlen)
{
    if (subscribe(k, err, errlen) != 0) {
        return -1;
    }
    k->wake = kafka_wake_start(k->rk, KAFKA_WAKE_MS);
    if (k->wake == NULL) {
        snprintf(err, errlen, "kafka: cannot start the fetch wake-up thread");
        return -1;
    }
    event_add(k->ev_read, NULL);
    /* Anything queued before the pipe was watched would not write to it again. */
    event_active(k->ev_read, EV_READ, 0);
    return 0;
}

static void close_drained_cb(void *ud)
{
    kafka_t *k = ud;
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(k->rk, k->q);
    if (e) {
        log_warn("kafka: close: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    event_active(k->ev_read, EV_READ, 0);
}

void kafka_close(kafka_t *k, void (*done)(void *ud), void *ud)
{
    k->closing = true;
    kafka_wake_set_backlogged(k->wake, false);
    k->close_done = done;
    k->close_ud = ud;
    pause_all(k);
    if (k->ingest) {
        ingest_note_offsets(k->ingest);
        ingest_drain(k->ingest, close_drained_cb, k);
    } else {
        close_drained_cb(k);
    }
}

void kafka_free(kafka_t *k)
{
    if (k == NULL) {
        return;
    }
    if (k->ev_read) {
        event_free(k->ev_read);
    }
    if (k->ev_retry) {
        event_free(k->ev_retry);
    }
    if (k->ev_pressure) {
        event_free(k->ev_pressure);
    }
    if (k->ev_hold) {
        event_free(k->ev_hold);
    }
    if (k->ev_revoke_timeout) {
        event_free(k->ev_revoke_timeout);
    }
    if (k->wake) {
        log_info("kafka: %lu fetch wake-ups were sent while a backlog waited",
                 kafka_wake_count(k->wake));
    }
    kafka_wake_stop(k->wake);
    if (k->q) {
        rd_kafka_queue_io_event_enable(k->q, -1, NULL, 0);
        rd_kafka_queue_destroy(k->q);
    }
    if (k->rk) {
        /* After kafka_close the group is left (or given up on at the shutdown deadline):
         * destroy must not try to close again, which can block for good when the close
         * queue is gone. Offsets live in PostgreSQL, so nothing is lost by not waiting. */
        rd_kafka_destroy_flags(k->rk, k->closing ? RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE : 0);
    }
    if (k->pipefd[0] >= 0) {
        close(k->pipefd[0]);
    }
    if (k->pipefd[1] >= 0) {
        close(k->pipefd[1]);
    }
    pg_conn_free(k->pgc);
    clear_parts(k);
    free(k->parts);
    free(k);
}

/* ---- hooks for ingest ---- */

static void snapshot_hook(agg_t *a, void *ud)
{
    kafka_t *k = ud;
    for (size_t i = 0; i < k->n_parts; i++) {
        part_t *p = &k->parts[i];
        if (p->state == P_ACTIVE && p->next >= 0 && p->next != p->batch_start) {
            agg_note_offset(a, p->topic, p->partition, p->batch_start, p->next);
            p->batch_start = p->next;
        }
    }
}

static void committed_hook(const agg_t *a, void *ud)
{
    kafka_t *k = ud;
    if (k->closing && rd_kafka_consumer_closed(k->rk)) {
        return;
    }
    /* Informational: keeps kafka-consumer-groups and lag exporters meaningful. */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (size_t i = 0; i < agg_n_offsets(a); i++) {
        const agg_offset_t *o = agg_offset_at(a, i);
        if (find_part(k, o->topic, o->partition) != NULL) {
            rd_kafka_topic_partition_list_add(l, o->topic, o->partition)->offset = o->next;
        }
    }
    if (l->cnt > 0) {
        rd_kafka_commit(k->rk, l, 1);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void conflict_hook(void *ud)
{
    kafka_t *k = ud;
    k->generation++;
    for (size_t i = 0; i < k->n_parts; i++) {
        k->parts[i].state = P_PENDING;
    }
    if (k->n_parts > 0 && !k->closing) {
        start_lookup(k);
    }
}

ingest_hooks_t kafka_ingest_hooks(kafka_t *k)
{
    return (ingest_hooks_t){snapshot_hook, committed_hook, conflict_hook, k};
}

size_t kafka_n_parts(const kafka_t *k)
{
    return k->n_parts;
}

bool kafka_part_info(const kafka_t *k, size_t i, kafka_part_info_t *out)
{
    if (i >= k->n_parts) {
        return false;
    }
    const part_t *p = &k->parts[i];
    int64_t lo = -1, hi = -1;
    if (rd_kafka_get_watermark_offsets(k->rk, p->topic, p->partition, &lo, &hi) !=
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        hi = -1;
    }
    *out = (kafka_part_info_t){p->topic, p->partition, p->next, hi, p->state == P_ACTIVE};
    return true;
}

bool kafka_brokers_down(const kafka_t *k)
{
    return k->brokers_down;
}

bool kafka_paused(const kafka_t *k)
{
    return k->paused;
}

uint64_t kafka_rebalances(const kafka_t *k)
{
    return k->rebalances;
}

uint64_t kafka_fetch_wakeups(const kafka_t *k)
{
    return kafka_wake_count(k->wake);
}
