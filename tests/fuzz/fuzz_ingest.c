/* libFuzzer target for message framing: what one Kafka message or one HTTP ingest body does,
 * through the real rule path without Kafka or PostgreSQL: ingest_message / ingest_body (size
 * and UTF-8 checks, NDJSON and JSON-array splitting), rules_run (JSON decode, the rule under its
 * budget, the checks on what it returned) and the checks on pattern IDs, into the batch's
 * aggregate. The rules are the default ones (rules/<topic>.lua) plus tests/fuzz/echo.lua, which
 * returns whatever the event says.
 *
 * Input: one selector byte, then the message. Selector bits 0-1: the topic (agent-manifest-
 * injections, agent-actions, agent-routing-decisions, fuzz-echo); bits 2-3: 0 = a Kafka
 * message, 1 = a Kafka message whose first lines are its key and then name=value headers up to
 * an empty line, 2 = an HTTP JSON body, 3 = an HTTP NDJSON body; bit 4: the Kafka message has a
 * timestamp.
 *
 * Checked after each input: per topic counters add up (events, dead letters), and everything in
 * the batch is what the flush may send: pattern IDs and agents 1..255 bytes of UTF-8 without
 * NUL, counts and times consistent, pairs ordered, dead-letter payloads cut to the limit. Then
 * the flush's parameters (flush_build) are read back as PostgreSQL reads array literals: every
 * one parses, is UTF-8 (PostgreSQL refuses anything else, and a flush it refuses is retried
 * for ever), parallel arrays have one element per row, and the elements are the batch's. */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agg.h"
#include "config.h"
#include "cooc.h"
#include "flush.h"
#include "fuzz.h"
#include "ingest.h"
#include "known.h"
#include "log.h"
#include "rules.h"

static struct event_base *base;
static config_t *cfg;
static rules_t *rules;
static ingest_t *batch; /* the ingest of the current input */
/* By name: the config's order of topics is the hash order of a Lua table. */
static const char *const topics[4] = {"agent-manifest-injections", "agent-actions",
                                      "agent-routing-decisions", "fuzz-echo"};

static void init(void)
{
    setenv("PATTERNTRACK_ROOT", PT_SOURCE_DIR, 1);
    log_set_level(LOG_ERROR);
    char err[1024];
    cfg = config_load(NULL, err, sizeof err);
    if (cfg == NULL) {
        fprintf(stderr, "fuzz_ingest: config: %s\n", err);
        abort();
    }
    /* Limits small enough for fuzz-sized inputs to reach both sides of them. */
    cfg->max_event_bytes = 2048;
    cfg->dead_letter_payload_max = 100;
    cfg->cooccurrence_max_patterns = 4;
    FUZZ_CHECK(cfg->n_topics < CONFIG_MAX_TOPICS);
    cfg->topics[cfg->n_topics].topic = strdup("fuzz-echo");
    cfg->topics[cfg->n_topics].rule = strdup("tests/fuzz/echo.lua");
    cfg->n_topics++;
    base = event_base_new();
    FUZZ_CHECK(base != NULL);
}

static bool name_ok(const char *s, size_t len)
{
    return len >= 1 && len <= 255 && fuzz_utf8_ref((const uint8_t *)s, len) &&
           memchr(s, '\0', len) == NULL;
}

typedef struct {
    int64_t uses, hour_uses;
    agg_use_t *list; /* the uses in iteration order, as flush_build sees them (copies: the
                      * iterator's agg_use_t lasts one call) */
    size_t n;
} sums_t;

static void check_use(const agg_use_t *u, void *ud)
{
    sums_t *s = ud;
    FUZZ_CHECK(name_ok(u->pattern, u->pattern_len));
    FUZZ_CHECK(name_ok(u->agent, u->agent_len));
    FUZZ_CHECK(u->count >= 1 && u->first_us <= u->last_us);
    s->uses += u->count;
    s->list = realloc(s->list, (s->n + 1) * sizeof *s->list);
    FUZZ_CHECK(s->list != NULL);
    s->list[s->n++] = *u;
}

/* One element of an array literal, unescaped. */
typedef struct {
    char *s;
    size_t len;
    bool quoted;
} elem_t;

/* Reads a one-dimensional array literal the way PostgreSQL's array_in does for the shapes the
 * flush writes: "{}" or "{e,e,...}", each e either "quoted" with backslash escapes or a bare
 * token without quotes, backslashes, braces, commas or blanks. Returns the count; *out holds the
 * elements (free with free_elems). */
static size_t parse_array(const char *lit, size_t len, elem_t **out)
{
    size_t n = 0;
    *out = NULL;
    FUZZ_CHECK(len >= 2 && lit[0] == '{' && lit[len - 1] == '}');
    if (len == 2) {
        return 0;
    }
    const char *p = lit + 1, *end = lit + len - 1;
    for (;;) {
        *out = realloc(*out, (n + 1) * sizeof **out);
        FUZZ_CHECK(*out != NULL);
        elem_t *e = &(*out)[n++];
        e->s = malloc((size_t)(end - p) + 1);
        FUZZ_CHECK(e->s != NULL);
        e->len = 0;
        e->quoted = p < end && *p == '"';
        if (e->quoted) {
            for (p++;; p++) {
                FUZZ_CHECK(p < end); /* the closing quote */
                if (*p == '"') {
                    p++;
                    break;
                }
                if (*p == '\\') {
                    p++;
                    FUZZ_CHECK(p < end);
                }
                e->s[e->len++] = *p;
            }
        } else {
            for (; p < end && *p != ','; p++) {
                FUZZ_CHECK(strchr("\"\\{} \t\n\r\v\f", *p) == NULL);
                e->s[e->len++] = *p;
            }
            FUZZ_CHECK(e->len > 0);
        }
        e->s[e->len] = '\0';
        if (p == end) {
            return n;
        }
        FUZZ_CHECK(*p == ',');
        p++;
    }
}

static void free_elems(elem_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(e[i].s);
    }
    free(e);
}

static int64_t int_elem(const elem_t *e)
{
    char *stop;
    FUZZ_CHECK(!e->quoted);
    long long v = strtoll(e->s, &stop, 10);
    FUZZ_CHECK(*stop == '\0');
    return v;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

typedef struct {
    agg_pair_t *v;
    size_t n;
} pairs_t;

static void pair_into(const agg_pair_t *p, void *ud)
{
    pairs_t *x = ud;
    x->v[x->n++] = *p;
}

static int pair_cmp(const void *x, const void *y)
{
    const agg_pair_t *a = x, *b = y;
    int c = agg_bytes_cmp(a->pattern_1, a->len_1, b->pattern_1, b->len_1);
    return c != 0 ? c : agg_bytes_cmp(a->pattern_2, a->len_2, b->pattern_2, b->len_2);
}

static int use_cmp(const void *x, const void *y)
{
    const agg_use_t *a = x, *b = y;
    int c = agg_bytes_cmp(a->pattern, a->pattern_len, b->pattern, b->pattern_len);
    return c != 0 ? c : agg_bytes_cmp(a->agent, a->agent_len, b->agent, b->agent_len);
}

/* One list of x_data at *at, len bytes: well formed (cooc.h) of the version and n entries
 * given, partners in byte order (n_low below self, when self is given), each entry what the
 * batch holds (uses of the owner: self is the pattern, or the agent when by_agent; pairs
 * otherwise). Returns the entries. */
static int64_t check_list(const char *data, size_t data_len, size_t *at, int64_t len, int version,
                          const elem_t *self, bool by_agent, int64_t n, int64_t low,
                          const sums_t *s, const pairs_t *ps)
{
    if (len == 0) {
        FUZZ_CHECK(n == 0);
        return 0;
    }
    FUZZ_CHECK(len >= 1 && *at + (size_t)len <= data_len);
    const char *list = data + *at;
    FUZZ_CHECK((unsigned char)list[0] == version);
    int64_t entries, n_low;
    char err[128];
    FUZZ_CHECK(
        cooc_check(list, (size_t)len, self->s, self->len, &entries, &n_low, err, sizeof err) == 0);
    FUZZ_CHECK(n >= 1 && entries == n && (low < 0 || n_low == low));
    cooc_iter_t it;
    FUZZ_CHECK(cooc_iter_init(&it, list, (size_t)len));
    int64_t i = 0;
    while (cooc_iter_next(&it)) {
        if (version == COOC_USAGE_VERSION) {
            agg_use_t key = {.pattern = by_agent ? it.id : self->s,
                             .pattern_len = (uint32_t)(by_agent ? it.len : self->len),
                             .agent = by_agent ? self->s : it.id,
                             .agent_len = (uint32_t)(by_agent ? self->len : it.len)};
            const agg_use_t *hit = bsearch(&key, s->list, s->n, sizeof(agg_use_t), use_cmp);
            FUZZ_CHECK(hit != NULL);
            FUZZ_CHECK(it.count == hit->count && it.first_us == hit->first_us &&
                       it.last_us == hit->last_us);
        } else {
            int below = agg_bytes_cmp(it.id, it.len, self->s, self->len);
            FUZZ_CHECK(below != 0 && (below < 0) == (i < low));
            agg_pair_t key = {.pattern_1 = below < 0 ? it.id : self->s,
                              .len_1 = (uint32_t)(below < 0 ? it.len : self->len),
                              .pattern_2 = below < 0 ? self->s : it.id,
                              .len_2 = (uint32_t)(below < 0 ? self->len : it.len)};
            const agg_pair_t *hit = bsearch(&key, ps->v, ps->n, sizeof(agg_pair_t), pair_cmp);
            FUZZ_CHECK(hit != NULL);
            FUZZ_CHECK(it.count == hit->count && it.last_us == hit->last_us);
        }
        i++;
    }
    FUZZ_CHECK(it.err == NULL && i == n);
    *at += (size_t)len;
    return n;
}

/* pt_flush's parameters, read back (flush.h names them). Every key is sent: the known keys
 * start empty here. */
static void check_flush(const agg_t *a, sums_t *s)
{
    char *v[FLUSH_NPARAMS];
    int lens[FLUSH_NPARAMS];
    known_t *known = known_new(1024);
    int n = flush_build(a, "pattern-usage-tracking", false, known, v, lens);
    known_drop(known);
    known_free(known);
    FUZZ_CHECK(n == FLUSH_NPARAMS);
    FUZZ_CHECK(strcmp(v[FLUSH_P_GROUP], "pattern-usage-tracking") == 0 &&
               strcmp(v[FLUSH_P_DURABLE], "false") == 0);
    elem_t *el[FLUSH_NPARAMS] = {NULL};
    size_t cnt[FLUSH_NPARAMS] = {0};
    for (int i = 0; i < n; i++) {
        FUZZ_CHECK(lens[i] >= 0);
        if (i == FLUSH_DATA_PARAM) {
            continue; /* binary: checked with the rows it holds */
        }
        FUZZ_CHECK(strlen(v[i]) == (size_t)lens[i]);
        FUZZ_CHECK(fuzz_utf8_ref((const uint8_t *)v[i], (size_t)lens[i]));
        if (i != FLUSH_P_GROUP && i != FLUSH_P_DURABLE) {
            cnt[i] = parse_array(v[i], (size_t)lens[i], &el[i]);
        }
    }
    /* parallel arrays: one element per row of their group */
    static const struct {
        int from, to;
    } groups[] = {{FLUSH_P_O_TOPIC, FLUSH_P_O_NEXT},           {FLUSH_P_P_ID, FLUSH_P_P_LAST},
                  {FLUSH_P_H_PATTERN, FLUSH_P_H_COUNT},        {FLUSH_P_A_AGENT, FLUSH_P_A_LAST},
                  {FLUSH_P_Y_AGENT, FLUSH_P_Y_LAST},           {FLUSH_P_K_PATTERN, FLUSH_P_K_AGENT},
                  {FLUSH_P_T_TOPIC, FLUSH_P_T_DUPS},           {FLUSH_P_D_TOPIC, FLUSH_P_D_SIZE},
                  {FLUSH_P_L_PATTERN, FLUSH_P_L_PARTNERS_LEN}, {FLUSH_P_M_AGENT, FLUSH_P_M_LEN}};
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        for (int i = groups[g].from; i <= groups[g].to; i++) {
            FUZZ_CHECK(cnt[i] == cnt[groups[g].from]);
        }
    }
    FUZZ_CHECK(cnt[FLUSH_P_O_TOPIC] == agg_n_offsets(a) &&
               cnt[FLUSH_P_H_PATTERN] == agg_n_hours(a) &&
               cnt[FLUSH_P_T_TOPIC] == agg_n_topics(a) && cnt[FLUSH_P_D_TOPIC] == agg_n_dead(a) &&
               cnt[FLUSH_P_K_PATTERN] == s->n);
    /* the lists: per pattern its agents and its partners, then per agent its patterns */
    if (s->n > 0) {
        qsort(s->list, s->n, sizeof *s->list, use_cmp);
    }
    pairs_t ps = {.v = malloc((agg_n_pairs(a) + 1) * sizeof(agg_pair_t)), .n = 0};
    FUZZ_CHECK(ps.v != NULL);
    agg_each_pair(a, pair_into, &ps);
    qsort(ps.v, ps.n, sizeof(agg_pair_t), pair_cmp);
    const char *data = v[FLUSH_DATA_PARAM];
    size_t data_len = (size_t)lens[FLUSH_DATA_PARAM], at = 0;
    int64_t uses = 0, sides = 0, patterns_with_uses = 0;
    for (size_t r = 0; r < cnt[FLUSH_P_L_PATTERN]; r++) {
        const elem_t *pat = &el[FLUSH_P_L_PATTERN][r];
        FUZZ_CHECK(r == 0 || agg_bytes_cmp(el[FLUSH_P_L_PATTERN][r - 1].s,
                                           el[FLUSH_P_L_PATTERN][r - 1].len, pat->s, pat->len) < 0);
        int64_t na = int_elem(&el[FLUSH_P_L_N_AGENTS][r]);
        uses += check_list(data, data_len, &at, int_elem(&el[FLUSH_P_L_AGENTS_LEN][r]),
                           COOC_USAGE_VERSION, pat, false, na, -1, s, &ps);
        patterns_with_uses += na > 0;
        sides += check_list(data, data_len, &at, int_elem(&el[FLUSH_P_L_PARTNERS_LEN][r]),
                            COOC_VERSION, pat, false, int_elem(&el[FLUSH_P_L_N_PARTNERS][r]),
                            int_elem(&el[FLUSH_P_L_N_LOW][r]), s, &ps);
    }
    int64_t agent_uses = 0;
    for (size_t r = 0; r < cnt[FLUSH_P_M_AGENT]; r++) {
        agent_uses +=
            check_list(data, data_len, &at, int_elem(&el[FLUSH_P_M_LEN][r]), COOC_USAGE_VERSION,
                       &el[FLUSH_P_M_AGENT][r], true, int_elem(&el[FLUSH_P_M_N][r]), -1, s, &ps);
    }
    FUZZ_CHECK(at == data_len);
    FUZZ_CHECK(uses == (int64_t)s->n && agent_uses == (int64_t)s->n);
    FUZZ_CHECK(sides == 2 * (int64_t)ps.n);
    FUZZ_CHECK(patterns_with_uses == (int64_t)cnt[FLUSH_P_P_ID]);
    free(ps.v);
    /* each pattern's and each agent's totals are the sums of its uses */
    int64_t total = 0;
    for (size_t r = 0; r < cnt[FLUSH_P_P_ID]; r++) {
        total += int_elem(&el[FLUSH_P_P_COUNT][r]);
        FUZZ_CHECK(int_elem(&el[FLUSH_P_P_FIRST][r]) <= int_elem(&el[FLUSH_P_P_LAST][r]));
    }
    FUZZ_CHECK(total == s->uses);
    total = 0;
    for (size_t r = 0; r < cnt[FLUSH_P_A_AGENT]; r++) {
        total += int_elem(&el[FLUSH_P_A_COUNT][r]);
    }
    FUZZ_CHECK(total == s->uses);
    total = 0;
    for (size_t r = 0; r < cnt[FLUSH_P_Y_AGENT]; r++) {
        total += int_elem(&el[FLUSH_P_Y_COUNT][r]);
    }
    FUZZ_CHECK(total == s->uses);
    for (size_t i = 0; i < cnt[FLUSH_P_D_TOPIC]; i++) {
        const agg_dead_t *d = agg_dead_at(a, i);
        const elem_t *pay = &el[FLUSH_P_D_PAYLOAD][i];
        FUZZ_CHECK(el[FLUSH_P_D_DETAIL][i].quoted ||
                   strcmp(el[FLUSH_P_D_DETAIL][i].s, "NULL") == 0);
        FUZZ_CHECK(pay->quoted && pay->len == 2 + 2 * d->payload_len);
        FUZZ_CHECK(pay->s[0] == '\\' && pay->s[1] == 'x');
        for (size_t k = 0; k < d->payload_len; k++) {
            int hi = hexval(pay->s[2 + 2 * k]), lo = hexval(pay->s[3 + 2 * k]);
            FUZZ_CHECK(hi >= 0 && lo >= 0 && (char)(hi * 16 + lo) == d->payload[k]);
        }
        FUZZ_CHECK(int_elem(&el[FLUSH_P_D_SIZE][i]) == (int64_t)d->payload_size);
    }
    for (int i = 0; i < n; i++) {
        free_elems(el[i], cnt[i]);
    }
    flush_build_free(v, n);
}

static void check_hour(const agg_hour_t *h, void *ud)
{
    FUZZ_CHECK(name_ok(h->pattern, h->pattern_len));
    FUZZ_CHECK(h->count >= 1);
    ((sums_t *)ud)->hour_uses += h->count;
}

static void check_pair(const agg_pair_t *p, void *ud)
{
    (void)ud;
    FUZZ_CHECK(name_ok(p->pattern_1, p->len_1) && name_ok(p->pattern_2, p->len_2));
    size_t n = p->len_1 < p->len_2 ? p->len_1 : p->len_2;
    int c = memcmp(p->pattern_1, p->pattern_2, n);
    FUZZ_CHECK(c < 0 || (c == 0 && p->len_1 < p->len_2));
    FUZZ_CHECK(p->count >= 1);
}

/* The snapshot hook: the filling batch, as the flush would get it. */
static void check_batch(agg_t *a, void *ud)
{
    (void)ud;
    ingest_t *g = batch;
    uint64_t events = 0, dead = 0, uses = 0;
    for (size_t i = 0; i < rules_count(rules); i++) {
        const ingest_topic_stats_t *st = ingest_stats(g, i);
        FUZZ_CHECK(st->dead_letters <= st->events && st->without_patterns <= st->events);
        events += st->events;
        dead += st->dead_letters;
        uses += st->uses;
    }
    FUZZ_CHECK(agg_events(a) == events);
    FUZZ_CHECK(agg_n_dead(a) == dead);
    for (size_t i = 0; i < agg_n_dead(a); i++) {
        const agg_dead_t *d = agg_dead_at(a, i);
        FUZZ_CHECK(d->reason != NULL);
        FUZZ_CHECK(d->payload_len <= (size_t)cfg->dead_letter_payload_max);
        FUZZ_CHECK(d->payload_len <= d->payload_size);
    }
    sums_t s = {0, 0, NULL, 0};
    agg_each_use(a, check_use, &s);
    agg_each_hour(a, check_hour, &s);
    agg_each_pair(a, check_pair, NULL);
    FUZZ_CHECK(s.uses == (int64_t)uses && s.hour_uses == (int64_t)uses);
    check_flush(a, &s);
    free(s.list);
}

/* A Kafka message; with_head: its first lines are the key, then name=value headers, up to an
 * empty line. */
static void kafka_message(ingest_t *g, size_t idx, const char *p, const char *end, bool with_head,
                          bool with_ts)
{
    rule_meta_t meta = {.topic = rules_topic(rules, idx),
                        .partition = 3,
                        .offset = 42,
                        .timestamp_ms = with_ts ? 1762268531734 : -1};
    char *names[RULES_MAX_HEADERS] = {NULL};
    if (with_head) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        meta.key = p;
        meta.key_len = (size_t)((nl ? nl : end) - p);
        p = nl ? nl + 1 : end;
        while (p < end && *p != '\n' && meta.n_headers < RULES_MAX_HEADERS) {
            nl = memchr(p, '\n', (size_t)(end - p));
            const char *stop = nl ? nl : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            size_t i = meta.n_headers++;
            names[i] = strndup(p, (size_t)((eq ? eq : stop) - p)); /* librdkafka's are C strings */
            FUZZ_CHECK(names[i] != NULL);
            meta.header_names[i] = names[i];
            meta.header_values[i] = eq ? eq + 1 : NULL; /* NULL: a header without a value */
            meta.header_lens[i] = eq ? (size_t)(stop - eq - 1) : 0;
            p = nl ? nl + 1 : end;
        }
        if (p < end && *p == '\n') {
            p++;
        }
    }
    ingest_msg_t m = {.topic_idx = idx,
                      .topic = rules_topic(rules, idx),
                      .partition = meta.partition,
                      .offset = meta.offset,
                      .payload = p,
                      .len = (size_t)(end - p),
                      .meta = &meta,
                      .kafka_ts_ms = meta.timestamp_ms};
    ingest_message(g, &m);
    for (size_t i = 0; i < meta.n_headers; i++) {
        free(names[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (base == NULL) {
        init();
    }
    if (size < 1) {
        return 0;
    }
    /* Fresh rules for each input, freed after it: an input's effect cannot depend on the
     * inputs before it, and it frees all it allocates (libFuzzer's leak check stays cheap). */
    char err[1024];
    rules = rules_new(cfg, err, sizeof err);
    if (rules == NULL) {
        fprintf(stderr, "fuzz_ingest: rules: %s\n", err);
        abort();
    }
    unsigned sel = data[0];
    int found = rules_find(rules, topics[sel & 3]);
    FUZZ_CHECK(found >= 0);
    size_t idx = (size_t)found;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    const char *topic = rules_topic(rules, idx);
    batch = ingest_new(base, cfg, rules, (ingest_hooks_t){.snapshot = check_batch});
    FUZZ_CHECK(batch != NULL);
    size_t events = 1;
    switch ((sel >> 2) & 3) {
    case 0:
    case 1:
        kafka_message(batch, idx, p, end, (sel >> 2) & 1, (sel >> 4) & 1);
        break;
    case 2:
        events = ingest_body(batch, idx, topic, p, (size_t)(end - p), INGEST_JSON);
        break;
    default:
        events = ingest_body(batch, idx, topic, p, (size_t)(end - p), INGEST_NDJSON);
        break;
    }
    FUZZ_CHECK(ingest_stats(batch, idx)->events == events);
    ingest_note_offsets(batch); /* calls check_batch */
    ingest_free(batch);
    batch = NULL;
    rules_free(rules);
    rules = NULL;
    return 0;
}
