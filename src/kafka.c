#include "kafka_impl.h"

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
        kafka_apply_assignment(k, true);
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
    part_t *p = kafka_find_part(k, topic, rkm->partition);
    if (p == NULL || p->state != P_ACTIVE || p->topic_idx == NO_RULE || k->paused || k->revoking ||
        k->closing) {
        return; /* not ours to count now; kafka_apply_assignment repositions before we count again */
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
    rd_kafka_conf_set_rebalance_cb(conf, kafka_rebalance_cb);
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
    k->ev_retry = evtimer_new(base, kafka_retry_cb, k);
    k->ev_pressure = evtimer_new(base, pressure_cb, k);
    k->ev_hold = evtimer_new(base, hold_cb, k);
    k->ev_revoke_timeout = evtimer_new(base, kafka_revoke_timeout_cb, k);
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
    kafka_clear_parts(k);
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
        if (kafka_find_part(k, o->topic, o->partition) != NULL) {
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
        kafka_start_lookup(k);
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
