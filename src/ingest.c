#include "ingest.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <xxhash.h>

#include "flush.h"
#include "log.h"
#include "metrics.h"
#include "text.h"

typedef agg_ref_t ref_t; /* a pattern ID the rule returned */

typedef struct {
    int64_t without, dead, flagged, events, with, over;
} batch_topic_t;

/* Per topic series, looked up once. */
typedef struct {
    metric_t *ok, *dead, *tracked, *without, *flagged, *duplicates;
} topic_metrics_t;

struct ingest_waiter {
    void (*cb)(bool ok, const char *why, void *ud);
    void *ud;
    struct ingest_waiter *next;
};

struct ingest {
    ingest_waiter_t *cur_waiters;      /* wait for the filling batch */
    ingest_waiter_t *inflight_waiters; /* wait for the batch being flushed */
    struct event_base *base;
    const config_t *cfg;
    rules_t *rules;
    ingest_hooks_t hooks;
    flush_t *flush;
    agg_t *cur;                  /* filling */
    agg_t *inflight;             /* being flushed (empty otherwise) */
    batch_topic_t *batch_topics; /* per topic counters of cur, moved into it at flush time */
    size_t n_topics;
    ingest_topic_stats_t *stats;
    topic_metrics_t *tm;
    metric_t *m_flush_seconds, *m_flush_ok, *m_flush_retry, *m_flush_conflict;
    metric_t *m_err_flush, *m_err_conflict, *m_err_dead;
    struct event *batch_timer;
    struct event *retry_timer;
    bool retry_wait;
    int64_t backoff_ms;
    struct timespec cur_started;
    bool force;      /* flush even if not due */
    bool timer_done; /* the batch timer fired: the filling batch is old enough */
    int64_t backlog; /* messages waiting in Kafka for this consumer, as last told */
    void (*drain_cb)(void *ud);
    void *drain_ud;
    ref_t *refs;
    size_t refs_cap;
    uint64_t flushes_ok, flushes_failed;
    uint64_t flushes_waited; /* committed batches that HTTP requests waited for */
    int64_t last_flush_us;
    time_t dl_log_second;
    uint64_t dl_suppressed;
};

static void batch_timer_cb(evutil_socket_t fd, short what, void *arg);
static void retry_timer_cb(evutil_socket_t fd, short what, void *arg);
static void start_flush(ingest_t *g);

const char *ingest_source_type(const char *topic)
{
    static const struct {
        const char *suffix, *type;
    } known[] = {{"agent-manifest-injections", "manifest"},
                 {"agent-actions", "action"},
                 {"agent-routing-decisions", "routing"}};
    size_t tl = strlen(topic);
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        size_t sl = strlen(known[i].suffix);
        if (tl >= sl && strcmp(topic + tl - sl, known[i].suffix) == 0) {
            return known[i].type;
        }
    }
    return topic;
}

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static int64_t mono_ms_since(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* Finds or creates the series of one topic. */
static void topic_series(topic_metrics_t *tm, const char *topic)
{
    char lt[300], ls[600], st[300];
    const char *help = "Events consumed, by topic and outcome (ok or dead_letter).";
    metrics_label(lt, sizeof lt, "topic", topic);
    snprintf(ls, sizeof ls, "%s,status=\"ok\"", lt);
    tm->ok = metrics_series("usage_tracking_events_consumed_total", METRIC_COUNTER, help, ls);
    snprintf(ls, sizeof ls, "%s,status=\"dead_letter\"", lt);
    tm->dead = metrics_series("usage_tracking_events_consumed_total", METRIC_COUNTER, help, ls);
    metrics_label(st, sizeof st, "source_type", ingest_source_type(topic));
    tm->tracked = metrics_series("pattern_usage_tracked_total", METRIC_COUNTER,
                                 "Pattern uses counted, by source type.", st);
    tm->without = metrics_series(
        "patterntrack_events_without_patterns_total", METRIC_COUNTER,
        "Events from which the rule extracted no pattern (extraction gaps), by topic.", lt);
    tm->flagged = metrics_series(
        "patterntrack_events_flagged_total", METRIC_COUNTER,
        "Events the rule flagged with a note (e.g. a pattern count but no list), by topic.", lt);
    tm->duplicates = metrics_series(
        "patterntrack_duplicate_events_total", METRIC_COUNTER,
        "Copies of events counted before (same topic and event ID within the topic's dedupe "
        "window), not counted again, by topic; added when their batch commits.",
        lt);
}

ingest_t *ingest_new(struct event_base *base, const config_t *c, rules_t *rules,
                     ingest_hooks_t hooks)
{
    ingest_t *g = calloc(1, sizeof *g);
    if (g == NULL) {
        return NULL;
    }
    g->base = base;
    g->cfg = c;
    g->rules = rules;
    g->hooks = hooks;
    g->n_topics = rules_count(rules);
    g->flush = flush_new(base, c);
    g->cur = agg_new();
    g->inflight = agg_new();
    g->batch_topics = calloc(g->n_topics + 1, sizeof(batch_topic_t));
    g->stats = calloc(g->n_topics + 1, sizeof(ingest_topic_stats_t));
    g->tm = calloc(g->n_topics + 1, sizeof(topic_metrics_t));
    for (size_t i = 0; g->tm && i < g->n_topics; i++) {
        topic_series(&g->tm[i], rules_topic(rules, i));
    }
    g->m_flush_seconds =
        metrics_series("pattern_usage_update_duration_seconds", METRIC_HISTOGRAM,
                       "Time to write one batch to PostgreSQL (one transaction).", "");
    g->m_flush_ok = metrics_series("patterntrack_flushes_total", METRIC_COUNTER,
                                   "Flushes by result.", "result=\"ok\"");
    g->m_flush_retry = metrics_series("patterntrack_flushes_total", METRIC_COUNTER,
                                      "Flushes by result.", "result=\"retry\"");
    g->m_flush_conflict = metrics_series("patterntrack_flushes_total", METRIC_COUNTER,
                                         "Flushes by result.", "result=\"conflict\"");
    g->m_err_flush = metrics_series("pattern_usage_errors_total", METRIC_COUNTER,
                                    "Tracking errors, by type.", "error_type=\"flush_failed\"");
    g->m_err_conflict =
        metrics_series("pattern_usage_errors_total", METRIC_COUNTER, "Tracking errors, by type.",
                       "error_type=\"offset_conflict\"");
    g->m_err_dead = metrics_series("pattern_usage_errors_total", METRIC_COUNTER,
                                   "Tracking errors, by type.", "error_type=\"dead_letter\"");
    g->batch_timer = evtimer_new(base, batch_timer_cb, g);
    g->retry_timer = evtimer_new(base, retry_timer_cb, g);
    if (!g->flush || !g->cur || !g->inflight || !g->batch_topics || !g->stats || !g->tm ||
        !g->batch_timer || !g->retry_timer) {
        ingest_free(g);
        return NULL;
    }
    return g;
}

static void notify(ingest_waiter_t **list, bool ok, const char *why)
{
    ingest_waiter_t *w = *list;
    *list = NULL;
    while (w) {
        ingest_waiter_t *n = w->next;
        w->cb(ok, why, w->ud);
        free(w);
        w = n;
    }
}

ingest_waiter_t *ingest_wait(ingest_t *g, void (*cb)(bool ok, const char *why, void *ud), void *ud)
{
    ingest_waiter_t *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return NULL;
    }
    w->cb = cb;
    w->ud = ud;
    w->next = g->cur_waiters;
    g->cur_waiters = w;
    return w;
}

void ingest_unwait(ingest_t *g, ingest_waiter_t *w)
{
    ingest_waiter_t **lists[2] = {&g->cur_waiters, &g->inflight_waiters};
    for (int i = 0; i < 2; i++) {
        for (ingest_waiter_t **pp = lists[i]; *pp; pp = &(*pp)->next) {
            if (*pp == w) {
                *pp = w->next;
                free(w);
                return;
            }
        }
    }
}

void ingest_free(ingest_t *g)
{
    if (g == NULL) {
        return;
    }
    notify(&g->inflight_waiters, false, "shutting down before the events were stored");
    notify(&g->cur_waiters, false, "shutting down before the events were stored");
    flush_free(g->flush);
    agg_free(g->cur);
    agg_free(g->inflight);
    free(g->batch_topics);
    free(g->stats);
    free(g->tm);
    if (g->batch_timer) {
        event_free(g->batch_timer);
    }
    if (g->retry_timer) {
        event_free(g->retry_timer);
    }
    free(g->refs);
    free(g);
}

static void dead_letter(ingest_t *g, const ingest_msg_t *m, const char *reason, const char *detail)
{
    char labels[400], lt[300], lr[100];
    metrics_label(lt, sizeof lt, "topic", m->topic);
    metrics_label(lr, sizeof lr, "reason", reason);
    snprintf(labels, sizeof labels, "%s,%s", lt, lr);
    metric_add(metrics_series("patterntrack_dead_letters_total", METRIC_COUNTER,
                              "Dead letters, by topic and reason.", labels),
               1);
    metric_add(g->m_err_dead, 1);
    agg_add_dead(g->cur, m->topic, m->partition, m->offset, reason, detail, m->payload, m->len,
                 (size_t)g->cfg->dead_letter_payload_max);
    /* One line per second at most: a poisoned topic must not flood the log. */
    time_t sec = time(NULL);
    if (sec != g->dl_log_second) {
        if (g->dl_suppressed > 0) {
            log_fields(LOG_WARN, LOG_F(LF_UINT("count", (unsigned long long)g->dl_suppressed)),
                       "more dead letters in the last second, not logged one by one");
        }
        g->dl_log_second = sec;
        g->dl_suppressed = 0;
        char d[301];
        snprintf(d, sizeof d, "%s", detail ? detail : "");
        log_fields(LOG_WARN,
                   LOG_F(LF_STR("topic", m->topic), LF_INT("partition", m->partition),
                         LF_INT("offset", (long long)m->offset), LF_STR("reason", reason),
                         LF_STR("detail", detail ? d : NULL)),
                   "dead letter");
    } else {
        g->dl_suppressed++;
    }
}

static int ref_cmp(const void *a, const void *b)
{
    const ref_t *x = a, *y = b;
    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    return memcmp(x->s, y->s, x->len);
}

/* Sorts and removes repeats: an event counts each pattern once. */
static size_t dedup(ref_t *r, size_t n)
{
    if (n < 2) {
        return n;
    }
    if (n <= 8) {
        size_t out = 0;
        for (size_t i = 0; i < n; i++) {
            bool seen = false;
            for (size_t j = 0; j < out; j++) {
                if (r[j].len == r[i].len && memcmp(r[j].s, r[i].s, r[i].len) == 0) {
                    seen = true;
                    break;
                }
            }
            if (!seen) {
                r[out++] = r[i];
            }
        }
        return out;
    }
    qsort(r, n, sizeof *r, ref_cmp);
    size_t out = 1;
    for (size_t i = 1; i < n; i++) {
        if (ref_cmp(&r[out - 1], &r[i]) != 0) {
            r[out++] = r[i];
        }
    }
    return out;
}

static const char *status_reason(rule_status_t st)
{
    switch (st) {
    case RULE_NOT_JSON:
        return "not json";
    case RULE_NOT_OBJECT:
        return "not an object";
    case RULE_ERROR:
        return "rule error";
    case RULE_TIMEOUT:
        return "rule timeout";
    case RULE_NOMEM:
        return "rule memory";
    case RULE_BAD_RESULT:
        return "rule result";
    default:
        return "rule error";
    }
}

/* Appends a printable rendering of an invalid ID to the detail text. */
static void describe_invalid(char *buf, size_t cap, size_t *used, const char *s, size_t len,
                             const char *why)
{
    if (*used + 16 >= cap) {
        return;
    }
    int n = snprintf(buf + *used, cap - *used, "%s%s", *used ? "; " : "", why);
    if (n > 0) {
        *used += (size_t)n < cap - *used ? (size_t)n : cap - *used - 1;
    }
    if (s != NULL) {
        int k = snprintf(buf + *used, cap - *used, " \"");
        *used += k > 0 ? (size_t)k : 0;
        for (size_t i = 0; i < len && i < 40 && *used + 5 < cap; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') {
                buf[(*used)++] = (char)ch;
            } else {
                *used += (size_t)snprintf(buf + *used, cap - *used, "\\x%02x", ch);
            }
        }
        if (*used + 2 < cap) {
            buf[(*used)++] = '"';
            buf[*used] = '\0';
        }
    }
}

void ingest_event_key(const char *topic, const char *id, size_t len, uint8_t key[16])
{
    /* topic, a NUL (no topic holds one), the ID: the same ID on two topics is two events.
     * Topics are at most 249 bytes and IDs 255 (rules.h). */
    char buf[512];
    size_t tl = strlen(topic) + 1;
    if (tl + len > sizeof buf) {
        abort();
    }
    memcpy(buf, topic, tl);
    memcpy(buf + tl, id, len);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(buf, tl + len));
    memcpy(key, c.digest, 16);
}

/* Everything one message does to the batch; the caller counts it. */
static void process(ingest_t *g, const ingest_msg_t *m, batch_topic_t *bt, ingest_topic_stats_t *st)
{
    agg_t *a = g->cur;
    char err[1024];
    if (m->len > (size_t)g->cfg->max_event_bytes) {
        snprintf(err, sizeof err, "%zu bytes, over max_event_bytes (%lld)", m->len,
                 (long long)g->cfg->max_event_bytes);
        dead_letter(g, m, "too large", err);
        bt->dead++;
        st->dead_letters++;
        return;
    }
    if (!text_utf8_valid(m->payload, m->len)) {
        dead_letter(g, m, "not utf-8", NULL);
        bt->dead++;
        st->dead_letters++;
        return;
    }
    /* An event with an ID on a deduplicated topic counts once its Kafka position holds the
     * claim on that ID (src/flush.c); HTTP events have no position to hold one. */
    int64_t window =
        m->partition >= 0 && g->cfg->n_dedupe > 0 ? config_dedupe_window(g->cfg, m->topic) : 0;
    if (m->meta != NULL) {
        m->meta->dedupe = window > 0;
    }
    rule_result_t res;
    rule_status_t rs =
        rules_run(g->rules, m->topic_idx, m->payload, m->len, m->meta, &res, err, sizeof err);
    if (rs != RULE_OK) {
        dead_letter(g, m, status_reason(rs), err);
        bt->dead++;
        st->dead_letters++;
        rules_done(g->rules);
        return;
    }
    int64_t t;
    if (res.has_time) {
        t = res.time_us;
    } else if (m->kafka_ts_ms >= 0) {
        t = m->kafka_ts_ms * 1000;
    } else {
        t = now_us();
    }
    if (res.n_patterns > g->refs_cap) {
        size_t cap = res.n_patterns < 64 ? 64 : res.n_patterns;
        ref_t *nr = realloc(g->refs, cap * sizeof(ref_t));
        if (nr == NULL) {
            abort();
        }
        g->refs = nr;
        g->refs_cap = cap;
    }
    size_t n = 0, n_invalid = 0;
    char detail[1024];
    size_t dused = 0;
    detail[0] = '\0';
    for (size_t i = 0; i < res.n_patterns; i++) {
        size_t len = 0;
        const char *s = rules_pattern(g->rules, i, &len);
        const char *why = NULL;
        if (s == NULL) {
            why = "not a string";
        } else if (len == 0) {
            why = "empty";
        } else if (len > 255) {
            why = "over 255 bytes";
        } else if (!text_utf8_valid(s, len) || memchr(s, '\0', len) != NULL) {
            why = "not valid UTF-8 text";
        }
        if (why != NULL) {
            n_invalid++;
            describe_invalid(detail, sizeof detail, &dused, s, len, why);
            continue;
        }
        g->refs[n].s = s;
        g->refs[n].len = len;
        n++;
    }
    n = dedup(g->refs, n);
    /* Pairs of the event's distinct patterns, unless there are so many that the pairs (n^2/2)
     * would cost more than the event is worth; those events are counted instead. */
    int64_t maxp = g->cfg->cooccurrence_max_patterns;
    bool pairs = maxp > 0 && n >= 2 && (int64_t)n <= maxp;
    bool over = maxp > 0 && (int64_t)n > maxp;
    if (window > 0 && res.event_id != NULL) {
        agg_hold_t h = {
            .topic = m->topic, .partition = m->partition, .offset = m->offset, .window_s = window};
        ingest_event_key(m->topic, res.event_id, res.event_id_len, h.key);
        agg_hold_event(a, &h, res.agent, res.agent_len, t, g->refs, n, pairs,
                       (n > 0 ? AGG_T_WITH : AGG_T_WITHOUT) |
                           (res.note != NULL ? AGG_T_FLAGGED : 0) | (over ? AGG_T_OVER : 0));
    } else {
        agg_add_event(a, res.agent, res.agent_len, t, g->refs, n, pairs);
        bt->over += over;
        bt->with += n > 0;
        bt->without += n == 0;
        bt->flagged += res.note != NULL;
    }
    st->uses += n;
    metric_add(g->tm[m->topic_idx].tracked, (double)n);
    if (n == 0) {
        st->without_patterns++;
        metric_add(g->tm[m->topic_idx].without, 1);
    }
    if (res.note != NULL) {
        st->flagged++;
        metric_add(g->tm[m->topic_idx].flagged, 1);
    }
    if (n_invalid > 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%zu invalid pattern ID%s (the %zu valid ones were counted): %s",
                 n_invalid, n_invalid == 1 ? "" : "s", n, detail);
        dead_letter(g, m, "invalid pattern id", msg);
        bt->dead++;
        st->dead_letters++;
    }
    rules_done(g->rules);
}

static void settle_topics(ingest_t *g);

void ingest_set_rules(ingest_t *g, rules_t *rules)
{
    /* The filling batch's counters are keyed by index: move them into the aggregate (keyed by
     * name) before the indices change meaning. */
    settle_topics(g);
    size_t n = rules_count(rules);
    ingest_topic_stats_t *stats = calloc(n + 1, sizeof *stats);
    topic_metrics_t *tm = calloc(n + 1, sizeof *tm);
    batch_topic_t *bt = calloc(n + 1, sizeof *bt);
    if (stats == NULL || tm == NULL || bt == NULL) {
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        int old = rules_find(g->rules, rules_topic(rules, i));
        if (old >= 0) {
            stats[i] = g->stats[old];
        }
        topic_series(&tm[i], rules_topic(rules, i));
    }
    free(g->stats);
    free(g->tm);
    free(g->batch_topics);
    g->stats = stats;
    g->tm = tm;
    g->batch_topics = bt;
    g->n_topics = n;
    g->rules = rules;
}

void ingest_message(ingest_t *g, const ingest_msg_t *m)
{
    if (agg_events(g->cur) == 0) {
        clock_gettime(CLOCK_MONOTONIC, &g->cur_started);
        struct timeval tv = {(time_t)(g->cfg->batch_timeout_ms / 1000),
                             (suseconds_t)((g->cfg->batch_timeout_ms % 1000) * 1000)};
        evtimer_add(g->batch_timer, &tv);
    }
    agg_count_event(g->cur);
    batch_topic_t *bt = &g->batch_topics[m->topic_idx];
    ingest_topic_stats_t *st = &g->stats[m->topic_idx];
    bt->events++;
    st->events++;
    uint64_t dead_before = st->dead_letters;
    process(g, m, bt, st);
    metric_add(st->dead_letters != dead_before ? g->tm[m->topic_idx].dead : g->tm[m->topic_idx].ok,
               1);
}

/* Catching up (a backlog of at least a batch waits in Kafka, and nobody waits for this batch's
 * commit): freshness is already the backlog's, and a flush costs PostgreSQL per row it writes
 * (a pattern, an hour, a list) more than per event, so batches grow to their size limits, with
 * at most CATCHUP_FACTOR times batch_timeout_ms between flushes. */
#define CATCHUP_FACTOR 8

static bool catching_up(const ingest_t *g)
{
    return g->backlog >= g->cfg->batch_max_events && g->cur_waiters == NULL;
}

static int64_t timeout_ms(const ingest_t *g)
{
    return g->cfg->batch_timeout_ms * (catching_up(g) ? CATCHUP_FACTOR : 1);
}

static bool due(ingest_t *g)
{
    if (agg_events(g->cur) == 0) {
        return false;
    }
    /* half of max_buffer_mb for the filling batch: the other half is the in-flight one's */
    size_t half = (size_t)g->cfg->max_buffer_mb << 19;
    return g->force || g->timer_done || agg_events(g->cur) >= (size_t)g->cfg->batch_max_events ||
           agg_patterns(g->cur) >= (size_t)g->cfg->batch_max_patterns ||
           agg_bytes(g->cur) >= half || mono_ms_since(&g->cur_started) >= timeout_ms(g);
}

void ingest_set_backlog(ingest_t *g, int64_t messages)
{
    bool was = catching_up(g);
    g->backlog = messages;
    if (was != catching_up(g) && evtimer_pending(g->batch_timer, NULL)) {
        evtimer_del(g->batch_timer); /* armed for the other timeout: ingest_poke re-arms it */
    }
}

void ingest_poke(ingest_t *g)
{
    if (!flush_busy(g->flush) && !g->retry_wait && due(g)) {
        start_flush(g);
        return;
    }
    /* A filling batch always has its timer running, whatever happened to earlier batches. */
    if (agg_events(g->cur) > 0 && !g->timer_done && !evtimer_pending(g->batch_timer, NULL)) {
        int64_t left = timeout_ms(g) - mono_ms_since(&g->cur_started);
        if (left < 0) {
            left = 0;
        }
        struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
        evtimer_add(g->batch_timer, &tv);
    }
}

bool ingest_accepting(const ingest_t *g)
{
    size_t limit = (size_t)g->cfg->max_buffer_mb << 20;
    return agg_bytes(g->cur) + agg_bytes(g->inflight) < limit &&
           agg_events(g->cur) + agg_events(g->inflight) < AGG_MAX_EVENTS;
}

bool ingest_idle(const ingest_t *g)
{
    return agg_events(g->cur) == 0 && agg_empty(g->inflight) && !flush_busy(g->flush);
}

bool ingest_pg_down(const ingest_t *g)
{
    return flush_pg_down(g->flush);
}

/* Moves the per-topic counters of the filling batch into its aggregate. */
static void settle_topics(ingest_t *g)
{
    for (size_t i = 0; i < g->n_topics; i++) {
        batch_topic_t *bt = &g->batch_topics[i];
        if (bt->events || bt->dead || bt->without || bt->flagged) {
            agg_topic_t d = {.topic = rules_topic(g->rules, i),
                             .events = bt->events,
                             .without_patterns = bt->without,
                             .dead_letters = bt->dead,
                             .flagged = bt->flagged,
                             .with_patterns = bt->with,
                             .over_pair_limit = bt->over};
            agg_add_topic(g->cur, &d);
            memset(bt, 0, sizeof *bt);
        }
    }
}

static void finish_drain(ingest_t *g)
{
    if (g->drain_cb) {
        void (*cb)(void *) = g->drain_cb;
        void *ud = g->drain_ud;
        g->drain_cb = NULL;
        g->drain_ud = NULL;
        g->force = false;
        cb(ud);
    }
}

/* A committed batch's duplicates, into the per-topic counters and the metric. */
static void count_duplicates(ingest_t *g, const agg_t *a)
{
    for (size_t i = 0; i < agg_n_topics(a); i++) {
        const agg_topic_t *t = agg_topic_at(a, i);
        int idx = t->duplicates > 0 ? rules_find(g->rules, t->topic) : -1;
        if (idx >= 0) {
            g->stats[idx].duplicates += (uint64_t)t->duplicates;
            metric_add(g->tm[idx].duplicates, (double)t->duplicates);
        }
    }
}

static void flush_done_cb(flush_status_t fs, const char *err, double secs, void *ud)
{
    ingest_t *g = ud;
    switch (fs) {
    case FLUSH_OK:
        metric_add(g->m_flush_ok, 1);
        metric_observe(g->m_flush_seconds, secs);
        g->flushes_ok++;
        g->flushes_waited += g->inflight_waiters != NULL;
        g->last_flush_us = now_us();
        g->backoff_ms = 0;
        if (log_get_level() <= LOG_DEBUG) {
            const agg_t *a = g->inflight;
            log_fields(LOG_DEBUG,
                       LOG_F(LF_UINT("events", agg_events(a)), LF_UINT("references", agg_refs(a)),
                             LF_UINT("patterns", agg_patterns(a)), LF_UINT("hours", agg_n_hours(a)),
                             LF_UINT("bytes", agg_bytes(a)), LF_DBL("duration_ms", secs * 1000)),
                       "flush committed");
        }
        if (g->hooks.committed) {
            g->hooks.committed(g->inflight, g->hooks.ud);
        }
        count_duplicates(g, g->inflight);
        agg_reset(g->inflight);
        notify(&g->inflight_waiters, true, NULL);
        break;
    case FLUSH_CONFLICT:
        metric_add(g->m_flush_conflict, 1);
        metric_add(g->m_err_conflict, 1);
        g->flushes_failed++;
        log_fields(LOG_WARN,
                   LOG_F(LF_STR("reason", err), LF_UINT("events", agg_events(g->inflight)),
                         LF_UINT("unflushed_events", agg_events(g->cur)),
                         LF_DBL("duration_ms", secs * 1000)),
                   "flush refused; dropping unflushed batches and re-reading offsets");
        agg_reset(g->inflight);
        agg_reset(g->cur);
        memset(g->batch_topics, 0, g->n_topics * sizeof(batch_topic_t));
        notify(&g->inflight_waiters, false, "dropped after an offset conflict; send them again");
        notify(&g->cur_waiters, false, "dropped after an offset conflict; send them again");
        if (g->hooks.conflict) {
            g->hooks.conflict(g->hooks.ud);
        }
        break;
    case FLUSH_RETRY:
        metric_add(g->m_flush_retry, 1);
        metric_add(g->m_err_flush, 1);
        g->flushes_failed++;
        /* Keep everything: the failed batch absorbs the newer one (older offsets expected,
         * newer reached) and becomes the filling batch again. */
        agg_merge(g->inflight, g->cur);
        agg_t *tmp = g->cur;
        g->cur = g->inflight;
        g->inflight = tmp;
        /* The merged batch carries both groups of waiters. */
        if (g->inflight_waiters) {
            ingest_waiter_t *last = g->inflight_waiters;
            while (last->next) {
                last = last->next;
            }
            last->next = g->cur_waiters;
            g->cur_waiters = g->inflight_waiters;
            g->inflight_waiters = NULL;
        }
        g->backoff_ms = g->backoff_ms ? g->backoff_ms * 2 : 100;
        if (g->backoff_ms > g->cfg->flush_retry_max_ms) {
            g->backoff_ms = g->cfg->flush_retry_max_ms;
        }
        log_fields(LOG_WARN,
                   LOG_F(LF_STR("reason", err ? err : "?"), LF_UINT("events", agg_events(g->cur)),
                         LF_INT("retry_ms", (long long)g->backoff_ms),
                         LF_DBL("duration_ms", secs * 1000)),
                   "flush failed; its events are kept and it is retried");
        g->retry_wait = true;
        /* A drain (shutdown, revoke) keeps retrying quickly; its caller bounds the time. */
        int64_t wait_ms = g->drain_cb && g->backoff_ms > 500 ? 500 : g->backoff_ms;
        struct timeval tv = {(time_t)(wait_ms / 1000), (suseconds_t)((wait_ms % 1000) * 1000)};
        evtimer_add(g->retry_timer, &tv);
        return;
    }
    if (g->drain_cb && agg_events(g->cur) == 0) {
        finish_drain(g);
        return;
    }
    ingest_poke(g);
}

static void start_flush(ingest_t *g)
{
    settle_topics(g);
    if (g->hooks.snapshot) {
        g->hooks.snapshot(g->cur, g->hooks.ud);
    }
    agg_t *tmp = g->inflight;
    g->inflight = g->cur;
    g->cur = tmp;
    g->timer_done = false;
    g->inflight_waiters = g->cur_waiters;
    g->cur_waiters = NULL;
    evtimer_del(g->batch_timer);
    if (flush_send(g->flush, g->inflight, g->inflight_waiters != NULL, flush_done_cb, g) != 0) {
        /* Only when a flush is already in flight, which start_flush's callers exclude. */
        log_error("flush could not be started");
        abort();
    }
}

/* libevent's timers run on a cached clock and may fire a little before batch_timeout_ms by
 * CLOCK_MONOTONIC, so the timer itself marks the batch due rather than the clock. */
static void batch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ingest_t *g = arg;
    g->timer_done = true;
    ingest_poke(g);
}

static void retry_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ingest_t *g = arg;
    g->retry_wait = false;
    if (!flush_busy(g->flush) && agg_events(g->cur) > 0) {
        start_flush(g);
    }
}

void ingest_drain(ingest_t *g, void (*done)(void *ud), void *ud)
{
    g->drain_cb = done;
    g->drain_ud = ud;
    if (agg_events(g->cur) == 0 && !flush_busy(g->flush)) {
        /* Offsets may still have moved (messages skipped as duplicates move nothing, so an
         * empty batch has nothing to store). */
        finish_drain(g);
        return;
    }
    g->force = true;
    if (g->retry_wait) {
        evtimer_del(g->retry_timer);
        g->retry_wait = false;
    }
    ingest_poke(g);
}

void ingest_note_offsets(ingest_t *g)
{
    if (g->hooks.snapshot) {
        g->hooks.snapshot(g->cur, g->hooks.ud);
    }
}

const ingest_topic_stats_t *ingest_stats(const ingest_t *g, size_t topic_idx)
{
    return &g->stats[topic_idx];
}

uint64_t ingest_flushes_ok(const ingest_t *g)
{
    return g->flushes_ok;
}

uint64_t ingest_flushes_waited(const ingest_t *g)
{
    return g->flushes_waited;
}

uint64_t ingest_flushes_failed(const ingest_t *g)
{
    return g->flushes_failed;
}

int64_t ingest_last_flush_us(const ingest_t *g)
{
    return g->last_flush_us;
}

size_t ingest_buffer_bytes(const ingest_t *g)
{
    return agg_bytes(g->cur) + agg_bytes(g->inflight);
}
