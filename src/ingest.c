#include "ingest_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <xxhash.h>

#include "flush.h"
#include "log.h"
#include "metrics.h"
#include "text.h"

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
    g->batch_timer = evtimer_new(base, ingest_batch_timer_cb, g);
    g->retry_timer = evtimer_new(base, ingest_retry_timer_cb, g);
    if (!g->flush || !g->cur || !g->inflight || !g->batch_topics || !g->stats || !g->tm ||
        !g->batch_timer || !g->retry_timer) {
        ingest_free(g);
        return NULL;
    }
    return g;
}

void ingest_free(ingest_t *g)
{
    if (g == NULL) {
        return;
    }
    ingest_notify(&g->inflight_waiters, false, "shutting down before the events were stored");
    ingest_notify(&g->cur_waiters, false, "shutting down before the events were stored");
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

void ingest_set_rules(ingest_t *g, rules_t *rules)
{
    /* The filling batch's counters are keyed by index: move them into the aggregate (keyed by
     * name) before the indices change meaning. */
    ingest_settle_topics(g);
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

const ingest_topic_stats_t *ingest_stats(const ingest_t *g, size_t topic_idx)
{
    return &g->stats[topic_idx];
}
