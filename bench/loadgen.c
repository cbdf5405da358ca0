/* pt-loadgen: synthetic load for patterntrack, and the exact counts it must end up with.
 *
 * Owns: the events of the load (every shape the default rules read, per topic, as listed in
 * reference-extraction.md, plus decoys that must not count and bad events), producing them
 * with librdkafka, and the ground truth (--truth): what a correct engine running the default
 * rules with the default limits (max_event_bytes 1 MiB) stores after consuming exactly these
 * events. Does not own PostgreSQL: tests/integration/lib.sh compares the truth with it.
 *
 * Truth file, one record a line, fields separated by tabs and escaped as PostgreSQL COPY text
 * (backslash, tab, newline, carriage return); times are microseconds since the epoch, hours
 * are floor(time_us / 3600e6):
 *   P  pattern  count  first_us  last_us
 *   A  pattern  agent  count  first_us  last_us
 *   H  pattern  hour  count
 *   C  pattern_1  pattern_2  count  last_us   (--pairs-truth; pattern_1 < pattern_2 in bytes)
 *   T  topic  events  events_without_patterns  dead_letters  flagged_events
 *   D  topic  reason  count
 *   U  topic  duplicates   (--dup-ratio; only topics that had any)
 *
 * --dup-ratio produces some good events a second time, byte for byte, and gives every event
 * that reaches the rules an event_id, except --no-id-ratio of the good ones, which carry
 * nothing the default rules could make an ID of. The truth is then that of an engine
 * deduplicating every topic over a window longer than the run: a copy of an event with an ID
 * adds to T's events and to U's duplicates only; a copy without one counts as a new event
 * everywhere (so the sum of the P counts stays the number of uses stored). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define MAX_PATTERNS (1u << 24)
#define MAX_AGENTS (1u << 24)
#define MAX_REFS_MAX 10000
#define LARGE_EVENT_BYTES (1536 * 1024) /* "too large": over the engine's default 1 MiB */
#define US_PER_HOUR INT64_C(3600000000)

enum { TOPIC_MANIFEST, TOPIC_ACTIONS, TOPIC_ROUTING, N_TOPICS };
static const char *const topic_base[N_TOPICS] = {"agent-manifest-injections", "agent-actions",
                                                 "agent-routing-decisions"};

/* Dead-letter reasons, as the engine writes them (src/ingest.c). */
enum { R_NOT_JSON, R_NOT_UTF8, R_NOT_OBJECT, R_TOO_LARGE, R_INVALID_ID, N_REASONS };
static const char *const reason_text[N_REASONS] = {"not json", "not utf-8", "not an object",
                                                   "too large", "invalid pattern id"};

typedef enum {
    BAD_NONE,
    BAD_NOT_JSON,
    BAD_NOT_UTF8,
    BAD_NOT_OBJECT,
    BAD_TOO_LARGE,
    BAD_INVALID_ID, /* one invalid ID among valid ones: they count, plus a dead letter */
    BAD_NO_REFS,    /* no reference at all: an event "without patterns" */
    BAD_FLAGGED,    /* manifest with a pattern count > 0 and no list: without AND flagged */
    N_BAD
} bad_t;

/* Relative weights of the bad kinds; "too large" is rare because each one is 1.5 MB. */
static const unsigned bad_weight[N_BAD] = {0, 10, 10, 10, 1, 15, 15, 10};

/* ---------------------------------------------------------------------------------------- */
/* Options */

typedef struct {
    const char *brokers;
    const char *prefix;
    uint64_t events;
    size_t patterns;
    size_t agents;
    double zipf;
    uint64_t seed;
    unsigned refs_max;
    unsigned refs_exact; /* every valid event names exactly this many distinct patterns */
    double rate;
    const char *truth;
    unsigned pairs_max; /* --pairs-truth: the engine's cooccurrence_max_patterns; 0 = none */
    double bad_ratio;
    bool have_start;
    int64_t time_start_s;
    double span_hours;
    const char *compression;
    double dup_ratio;
    double no_id_ratio;
    unsigned in_flight; /* max.in.flight.requests.per.connection; 0: librdkafka's */
    bool quiet;
} opts_t;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: pt-loadgen [options]\n"
            "Produces synthetic events on the three patterntrack topics and, with --truth,\n"
            "writes the exact counts a correct engine stores for them.\n"
            "\n"
            "  --brokers LIST         Kafka brokers (default $KAFKA_BOOTSTRAP_SERVERS or\n"
            "                         127.0.0.1:59092)\n"
            "  --topic-prefix STR     prefix of the topics PREFIX+agent-manifest-injections,\n"
            "                         PREFIX+agent-actions, PREFIX+agent-routing-decisions\n"
            "  --events N             events to produce (default 100000)\n"
            "  --patterns P           distinct pattern IDs to draw from (default 10000)\n"
            "  --agents A             distinct agent names to draw from (default 500)\n"
            "  --zipf S               Zipf exponent of pattern and agent choice (default 1.1;\n"
            "                         0 = uniform)\n"
            "  --seed N               random seed (default 42); with --time-start too, the\n"
            "                         same events (Kafka timestamps of timed events aside)\n"
            "  --refs-max K           references per event, uniform 0..K (default 8)\n"
            "  --refs-exact K         instead, exactly K distinct patterns per event (repeats\n"
            "                         of one redrawn); at most --refs-max and --patterns\n"
            "  --rate EV_PER_S        events per second, 0 = as fast as possible (default 0)\n"
            "  --truth FILE           write the ground truth (TSV, see the source) to FILE\n"
            "  --pairs-truth MAX      the truth also holds every co-occurrence pair, for an\n"
            "                         engine whose cooccurrence_max_patterns is MAX (1..1000)\n"
            "  --bad-ratio R          fraction of bad events, 0..1 (default 0)\n"
            "  --time-start EPOCH_S   earliest event time (default now - span)\n"
            "  --time-span-hours H    event times spread uniformly over H hours (default 48)\n"
            "  --compression C        gzip | none | snappy | lz4 | zstd (default gzip); with\n"
            "                         none no 1.5 MB event is made (the broker would refuse it)\n"
            "  --dup-ratio R          fraction of good events produced twice, byte for byte,\n"
            "                         0..1 (default 0): half soon after, half about\n"
            "                         events/2 later (or at the end), half under another key;\n"
            "                         every event then carries a unique event_id\n"
            "  --no-id-ratio F        with --dup-ratio, the fraction of good events with no ID\n"
            "                         at all (no event_id, id or correlation_id; default 0.1)\n"
            "  --in-flight N          produce requests in flight per broker, 1..5 (default\n"
            "                         librdkafka's 5); 1 keeps an idempotent producer in step\n"
            "                         with a broker restarted under it (a test of outages)\n"
            "  --partitions-hint N    ignored\n"
            "  --quiet                no progress lines and notes (the summary stays)\n"
            "  --help                 this text\n"
            "\n"
            "Events without a usable time carry an explicit Kafka timestamp (the event time);\n"
            "keep the time range within the topic's retention and no later than now + 1 h.\n"
            "Exit status: 0 when every event was delivered, 1 otherwise, 2 bad usage.\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-') {
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)) {
        return -1;
    }
    *out = v;
    return 0;
}

enum {
    O_BROKERS = 256,
    O_PREFIX,
    O_EVENTS,
    O_PATTERNS,
    O_AGENTS,
    O_ZIPF,
    O_SEED,
    O_REFS_MAX,
    O_REFS_EXACT,
    O_RATE,
    O_TRUTH,
    O_PAIRS_TRUTH,
    O_BAD_RATIO,
    O_TIME_START,
    O_SPAN,
    O_COMPRESSION,
    O_DUP_RATIO,
    O_NO_ID_RATIO,
    O_IN_FLIGHT,
    O_PARTITIONS,
    O_QUIET,
    O_HELP
};

/* Fills o from the command line. 0 = run, 1 = --help was printed, -1 = bad usage (said). */
static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, O_BROKERS},
        {"topic-prefix", required_argument, NULL, O_PREFIX},
        {"events", required_argument, NULL, O_EVENTS},
        {"patterns", required_argument, NULL, O_PATTERNS},
        {"agents", required_argument, NULL, O_AGENTS},
        {"zipf", required_argument, NULL, O_ZIPF},
        {"seed", required_argument, NULL, O_SEED},
        {"refs-max", required_argument, NULL, O_REFS_MAX},
        {"refs-exact", required_argument, NULL, O_REFS_EXACT},
        {"rate", required_argument, NULL, O_RATE},
        {"truth", required_argument, NULL, O_TRUTH},
        {"pairs-truth", required_argument, NULL, O_PAIRS_TRUTH},
        {"bad-ratio", required_argument, NULL, O_BAD_RATIO},
        {"time-start", required_argument, NULL, O_TIME_START},
        {"time-span-hours", required_argument, NULL, O_SPAN},
        {"compression", required_argument, NULL, O_COMPRESSION},
        {"dup-ratio", required_argument, NULL, O_DUP_RATIO},
        {"no-id-ratio", required_argument, NULL, O_NO_ID_RATIO},
        {"in-flight", required_argument, NULL, O_IN_FLIGHT},
        {"partitions-hint", required_argument, NULL, O_PARTITIONS},
        {"quiet", no_argument, NULL, O_QUIET},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *env = getenv("KAFKA_BOOTSTRAP_SERVERS");
    *o = (opts_t){
        .brokers = env && *env ? env : "127.0.0.1:59092",
        .prefix = "",
        .events = 100000,
        .patterns = 10000,
        .agents = 500,
        .zipf = 1.1,
        .seed = 42,
        .refs_max = 8,
        .span_hours = 48,
        .compression = "gzip",
        .no_id_ratio = 0.1,
    };
    int c;
    uint64_t u;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        const char *bad = NULL;
        switch (c) {
        case O_BROKERS:
            o->brokers = optarg;
            break;
        case O_PREFIX:
            o->prefix = optarg;
            break;
        case O_EVENTS:
            if (parse_u64(optarg, &o->events) != 0) {
                bad = "--events needs a count";
            }
            break;
        case O_PATTERNS:
            if (parse_u64(optarg, &u) != 0 || u < 1 || u > MAX_PATTERNS) {
                bad = "--patterns needs 1..16777216";
            }
            o->patterns = (size_t)u;
            break;
        case O_AGENTS:
            if (parse_u64(optarg, &u) != 0 || u < 1 || u > MAX_AGENTS) {
                bad = "--agents needs 1..16777216";
            }
            o->agents = (size_t)u;
            break;
        case O_ZIPF:
            if (parse_double(optarg, &o->zipf) != 0 || o->zipf < 0 || o->zipf > 10) {
                bad = "--zipf needs 0..10";
            }
            break;
        case O_SEED:
            if (parse_u64(optarg, &o->seed) != 0) {
                bad = "--seed needs an unsigned integer";
            }
            break;
        case O_REFS_MAX:
            if (parse_u64(optarg, &u) != 0 || u > MAX_REFS_MAX) {
                bad = "--refs-max needs 0..10000";
            }
            o->refs_max = (unsigned)u;
            break;
        case O_REFS_EXACT:
            if (parse_u64(optarg, &u) != 0 || u < 1 || u > MAX_REFS_MAX) {
                bad = "--refs-exact needs 1..10000";
            }
            o->refs_exact = (unsigned)u;
            break;
        case O_RATE:
            if (parse_double(optarg, &o->rate) != 0 || o->rate < 0) {
                bad = "--rate needs a number >= 0";
            }
            break;
        case O_TRUTH:
            o->truth = optarg;
            break;
        case O_PAIRS_TRUTH:
            if (parse_u64(optarg, &u) != 0 || u < 1 || u > 1000) {
                bad = "--pairs-truth needs 1..1000";
            }
            o->pairs_max = (unsigned)u;
            break;
        case O_BAD_RATIO:
            if (parse_double(optarg, &o->bad_ratio) != 0 || o->bad_ratio < 0 || o->bad_ratio > 1) {
                bad = "--bad-ratio needs 0..1";
            }
            break;
        case O_TIME_START:
            if (parse_i64(optarg, &o->time_start_s) != 0 || o->time_start_s < 0 ||
                o->time_start_s > INT64_C(253402300799)) {
                bad = "--time-start needs seconds since the epoch (>= 0)";
            }
            o->have_start = true;
            break;
        case O_SPAN:
            if (parse_double(optarg, &o->span_hours) != 0 || o->span_hours <= 0 ||
                o->span_hours > 1e6) {
                bad = "--time-span-hours needs a number > 0";
            }
            break;
        case O_COMPRESSION:
            if (strcmp(optarg, "gzip") && strcmp(optarg, "none") && strcmp(optarg, "snappy") &&
                strcmp(optarg, "lz4") && strcmp(optarg, "zstd")) {
                bad = "--compression needs gzip, none, snappy, lz4 or zstd";
            }
            o->compression = optarg;
            break;
        case O_DUP_RATIO:
            if (parse_double(optarg, &o->dup_ratio) != 0 || o->dup_ratio < 0 || o->dup_ratio > 1) {
                bad = "--dup-ratio needs 0..1";
            }
            break;
        case O_NO_ID_RATIO:
            if (parse_double(optarg, &o->no_id_ratio) != 0 || o->no_id_ratio < 0 ||
                o->no_id_ratio > 1) {
                bad = "--no-id-ratio needs 0..1";
            }
            break;
        case O_IN_FLIGHT:
            if (parse_u64(optarg, &u) != 0 || u < 1 || u > 5) {
                bad = "--in-flight needs 1..5";
            }
            o->in_flight = (unsigned)u;
            break;
        case O_PARTITIONS:
            break;
        case O_QUIET:
            o->quiet = true;
            break;
        case O_HELP:
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
        if (bad != NULL) {
            fprintf(stderr, "pt-loadgen: %s, got '%s'\n", bad, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pt-loadgen: unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    if (o->refs_exact > 0 && (o->refs_exact > o->refs_max || o->refs_exact > o->patterns)) {
        fprintf(stderr, "pt-loadgen: --refs-exact %u is more than --refs-max (%u) or --patterns\n",
                o->refs_exact, o->refs_max);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Random numbers: xoshiro256** seeded through splitmix64. */

typedef struct {
    uint64_t s[4];
} rng_t;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void rng_seed(rng_t *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        r->s[i] = splitmix64(&seed);
    }
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1). */
static double rng_double(rng_t *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in [0, n); 0 when n is 0. */
static uint64_t rng_below(rng_t *r, uint64_t n)
{
    if (n == 0) {
        return 0;
    }
    uint64_t v = (uint64_t)(rng_double(r) * (double)n);
    return v < n ? v : n - 1;
}

static bool rng_chance(rng_t *r, double p)
{
    return rng_double(r) < p;
}

/* Zipf over [0, n): a precomputed CDF and a binary search per draw. */
typedef struct {
    double *cdf;
    size_t n;
} zipf_t;

static int zipf_init(zipf_t *z, size_t n, double s)
{
    z->n = n;
    z->cdf = malloc(n * sizeof(double));
    if (z->cdf == NULL) {
        return -1;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)(i + 1), s);
        z->cdf[i] = sum;
    }
    for (size_t i = 0; i < n; i++) {
        z->cdf[i] /= sum;
    }
    z->cdf[n - 1] = 1.0;
    return 0;
}

static size_t zipf_draw(const zipf_t *z, rng_t *r)
{
    double u = rng_double(r);
    size_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return lo;
}

/* ---------------------------------------------------------------------------------------- */
/* A growable byte buffer (aborts when memory runs out: a load generator has no plan B). */

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t more)
{
    if (b->len + more <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) {
        cap *= 2;
    }
    char *np = realloc(b->p, cap);
    if (np == NULL) {
        fprintf(stderr, "pt-loadgen: out of memory\n");
        abort();
    }
    b->p = np;
    b->cap = cap;
}

static void buf_put(buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void buf_puts(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void buf_putc(buf_t *b, char c)
{
    buf_reserve(b, 1);
    b->p[b->len++] = c;
}

static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Writes s[0..n) (valid UTF-8) as a JSON string. With esc, the string is spelled differently
 * but decodes to the same bytes: non-ASCII as \u escapes (surrogate pairs above the BMP), '/'
 * as "\/" and a leading ASCII letter or digit as \u00XX. */
static void json_strn(buf_t *b, const char *s, size_t n, bool esc)
{
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf_putc(b, '\\');
            buf_putc(b, (char)c);
        } else if (c == '\n') {
            buf_puts(b, "\\n");
        } else if (c == '\t') {
            buf_puts(b, "\\t");
        } else if (c == '\r') {
            buf_puts(b, "\\r");
        } else if (c < 0x20) {
            buf_printf(b, "\\u%04x", c);
        } else if (esc && c == '/') {
            buf_puts(b, "\\/");
        } else if (esc && i == 0 && c < 0x80 &&
                   ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            buf_printf(b, "\\u%04X", c);
        } else if (esc && c >= 0x80) {
            uint32_t cp;
            size_t extra;
            if (c >= 0xF0) {
                cp = c & 0x07;
                extra = 3;
            } else if (c >= 0xE0) {
                cp = c & 0x0F;
                extra = 2;
            } else {
                cp = c & 0x1F;
                extra = 1;
            }
            for (size_t k = 1; k <= extra && i + k < n; k++) {
                cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
            }
            i += extra;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                buf_printf(b, "\\u%04x", cp);
            }
        } else {
            buf_putc(b, (char)c);
        }
    }
    buf_putc(b, '"');
}

static void json_str(buf_t *b, const char *s)
{
    json_strn(b, s, strlen(s), false);
}

/* Writes `"key":` after a comma unless it is the object's first member. */
static void json_key(buf_t *b, bool *first, const char *key)
{
    if (!*first) {
        buf_putc(b, ',');
    }
    *first = false;
    json_str(b, key);
    buf_putc(b, ':');
}

/* ---------------------------------------------------------------------------------------- */
/* Names of patterns and agents: index i always gets the same name. */

typedef struct {
    char **s;
    size_t *len;
    size_t n;
} names_t;

/* Pattern IDs: mostly pat-000123, every 50th a UUID, every 97th one that exercises escaping
 * (spaces, quotes, backslashes, commas, braces, UTF-8, COPY's \N, a tab, exactly 255 bytes).
 * The index is part of every name, so names are distinct. */
static char *pattern_name(size_t i)
{
    char s[512];
    if (i % 97 == 3) {
        size_t j = i / 97;
        switch (j % 16) {
        case 0:
            snprintf(s, sizeof s, "pat with spaces %zu", i);
            break;
        case 1:
            snprintf(s, sizeof s, "pat \"quoted\" %zu", i);
            break;
        case 2:
            snprintf(s, sizeof s, "pat\\back\\slash\\%zu", i);
            break;
        case 3:
            snprintf(s, sizeof s, "pat,with,commas,%zu", i);
            break;
        case 4:
            snprintf(s, sizeof s, "{pat-braces-%zu}", i);
            break;
        case 5:
            snprintf(s, sizeof s, "caf\xc3\xa9-\xc3\xa9t\xc3\xa9-%zu", i);
            break;
        case 6:
            snprintf(s, sizeof s,
                     "\xe6\x97\xa5\xe6\x9c\xac-\xe3\x83\x91\xe3\x82\xbf\xe3\x83\xbc"
                     "\xe3\x83\xb3-%zu",
                     i);
            break;
        case 7:
            snprintf(s, sizeof s, "pat-'single'-%zu", i);
            break;
        case 8:
            snprintf(s, sizeof s, "dir/sub/pat-%zu", i);
            break;
        case 9:
            snprintf(s, sizeof s, "emoji-\xf0\x9f\x98\x80-%zu", i);
            break;
        case 10:
            snprintf(s, sizeof s, "  lead-and-trail-%zu  ", i);
            break;
        case 11:
            snprintf(s, sizeof s, "{\"json\":\"like\",\"n\":%zu}", i);
            break;
        case 12:
            snprintf(s, sizeof s, "\\N-%zu", i);
            break;
        case 13: {
            /* Exactly 255 bytes. */
            int n = snprintf(s, sizeof s, "long-%zu-", i);
            memset(s + n, 'x', (size_t)(255 - n));
            s[255] = '\0';
            break;
        }
        case 14: {
            /* As many 2-byte characters as fit in 255 bytes. */
            size_t n = (size_t)snprintf(s, sizeof s, "\xe9\x95\xb7-%zu-", i);
            while (n + 2 <= 255) {
                s[n++] = '\xc3';
                s[n++] = '\xa9';
            }
            s[n] = '\0';
            break;
        }
        default:
            snprintf(s, sizeof s, "pat\ttab-%zu", i);
            break;
        }
    } else if (i % 50 == 7) {
        uint64_t x = (uint64_t)i * 7919;
        uint64_t h = splitmix64(&x);
        snprintf(s, sizeof s, "%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-%04" PRIx32 "-%012zx",
                 (uint32_t)(h >> 32), (uint32_t)(h >> 16) & 0xFFFF, (uint32_t)(h >> 4) & 0xFFF,
                 0x8000 | ((uint32_t)h & 0x3FFF), i);
    } else {
        snprintf(s, sizeof s, "pat-%06zu", i);
    }
    return strdup(s);
}

/* Agent names: agent-7, every 53rd an odd one; agent 9 is literally NULL (an array element
 * that must be quoted). Never "unknown", which is what a missing agent becomes. */
static char *agent_name(size_t i)
{
    char s[128];
    if (i == 9) {
        snprintf(s, sizeof s, "NULL");
    } else if (i % 53 == 5) {
        switch ((i / 53) % 7) {
        case 0:
            snprintf(s, sizeof s, "agent with space %zu", i);
            break;
        case 1:
            snprintf(s, sizeof s, "Agent-\xc3\x89-%zu", i);
            break;
        case 2:
            snprintf(s, sizeof s, "agent\"quote\"-%zu", i);
            break;
        case 3:
            snprintf(s, sizeof s, "\xe4\xbb\xa3\xe7\x90\x86-%zu", i);
            break;
        case 4:
            snprintf(s, sizeof s, "agent\\bs-%zu", i);
            break;
        case 5:
            snprintf(s, sizeof s, "agent,comma-%zu", i);
            break;
        default:
            snprintf(s, sizeof s, "{agent}-%zu", i);
            break;
        }
    } else {
        snprintf(s, sizeof s, "agent-%zu", i);
    }
    return strdup(s);
}

static int names_init(names_t *nm, size_t n, char *(*make)(size_t))
{
    nm->n = n;
    nm->s = calloc(n, sizeof(char *));
    nm->len = calloc(n, sizeof(size_t));
    if (nm->s == NULL || nm->len == NULL) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        nm->s[i] = make(i);
        if (nm->s[i] == NULL) {
            return -1;
        }
        nm->len[i] = strlen(nm->s[i]);
    }
    return 0;
}

static void names_free(names_t *nm)
{
    for (size_t i = 0; nm->s && i < nm->n; i++) {
        free(nm->s[i]);
    }
    free(nm->s);
    free(nm->len);
}

/* ---------------------------------------------------------------------------------------- */
/* Truth: per pattern arrays (patterns are indices), open-addressing tables for
 * (pattern, agent) and (pattern, hour). */

typedef struct {
    uint64_t key; /* EMPTY_KEY when free */
    uint64_t count;
    int64_t first, last;
} cell_t;

#define EMPTY_KEY UINT64_MAX

typedef struct {
    cell_t *cells;
    size_t cap, n;
} table_t;

static uint64_t mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

static void table_alloc(table_t *t, size_t cap)
{
    t->cells = malloc(cap * sizeof(cell_t));
    if (t->cells == NULL) {
        fprintf(stderr, "pt-loadgen: out of memory\n");
        abort();
    }
    for (size_t i = 0; i < cap; i++) {
        t->cells[i].key = EMPTY_KEY;
    }
    t->cap = cap;
    t->n = 0;
}

static cell_t *table_slot(cell_t *cells, size_t cap, uint64_t key)
{
    size_t i = (size_t)mix64(key) & (cap - 1);
    while (cells[i].key != EMPTY_KEY && cells[i].key != key) {
        i = (i + 1) & (cap - 1);
    }
    return &cells[i];
}

/* The cell of key, created with count 0 when missing. */
static cell_t *table_get(table_t *t, uint64_t key)
{
    if ((t->n + 1) * 10 > t->cap * 7) {
        cell_t *old = t->cells;
        size_t oldcap = t->cap;
        table_alloc(t, oldcap ? oldcap * 2 : 1024);
        for (size_t i = 0; i < oldcap; i++) {
            if (old[i].key != EMPTY_KEY) {
                *table_slot(t->cells, t->cap, old[i].key) = old[i];
                t->n++;
            }
        }
        free(old);
    }
    cell_t *c = table_slot(t->cells, t->cap, key);
    if (c->key == EMPTY_KEY) {
        c->key = key;
        c->count = 0;
        t->n++;
    }
    return c;
}

typedef struct {
    uint64_t count;
    int64_t first, last;
} usage_t;

typedef struct {
    usage_t *patterns;
    table_t pairs; /* key: pattern << 32 | agent (agent == n_agents is "unknown") */
    table_t hours; /* key: pattern << 40 | hour */
    table_t cooc;  /* key: p1 << 32 | p2, p1's name before p2's in byte order (--pairs-truth) */
    uint64_t events[N_TOPICS], without[N_TOPICS], dead[N_TOPICS], flagged[N_TOPICS];
    uint64_t dl[N_TOPICS][N_REASONS];
    uint64_t dups[N_TOPICS]; /* copies the engine recognises by their ID */
    uint64_t uses;
} truth_t;

static void use_time(uint64_t *count, int64_t *first, int64_t *last, int64_t us)
{
    if (*count == 0 || us < *first) {
        *first = us;
    }
    if (*count == 0 || us > *last) {
        *last = us;
    }
    (*count)++;
}

static void truth_use(truth_t *t, uint32_t p, uint32_t agent, int64_t us)
{
    usage_t *u = &t->patterns[p];
    use_time(&u->count, &u->first, &u->last, us);
    cell_t *c = table_get(&t->pairs, ((uint64_t)p << 32) | agent);
    use_time(&c->count, &c->first, &c->last, us);
    c = table_get(&t->hours, ((uint64_t)p << 40) | (uint64_t)(us / US_PER_HOUR));
    c->count++;
    t->uses++;
}

/* Writes s as a COPY text field. */
static void tsv_field(FILE *f, const char *s, size_t n)
{
    fputc('\t', f);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\') {
            fputs("\\\\", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else {
            fputc(c, f);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Events */

/* Where references go. One kind appears at most once per level (event, payload). */
enum {
    K_M_MAIN,       /* manifest: patterns | manifest.patterns, as a list or {available: [...]} */
    K_M_DISCOVERED, /* manifest: patterns_discovered (strings) */
    K_IDS,          /* manifest and actions: pattern_ids (strings, or one string) */
    K_M_SNAPSHOT,   /* manifest: full_manifest_snapshot.patterns.available ({name, file}) */
    K_A_PATTERNS,   /* actions: patterns */
    K_A_METADATA,   /* actions: metadata.patterns */
    K_R_USED,       /* routing: patterns_used */
    K_R_CONF,       /* routing: confidence_components.patterns */
    K_R_CONTEXT,    /* routing: context.patterns */
};

static const int topic_kinds[N_TOPICS][4] = {
    {K_M_MAIN, K_M_DISCOVERED, K_IDS, K_M_SNAPSHOT},
    {K_A_PATTERNS, K_IDS, K_A_METADATA, -1},
    {K_R_USED, K_R_CONF, K_R_CONTEXT, -1},
};

#define MAX_SLOTS 8

typedef struct {
    int kind;
    int level; /* 0 = event, 1 = payload */
    int variant;
} slot_t;

#define REF_EMPTY (-1) /* the invalid ID "" */
#define REF_LONG (-2)  /* an invalid ID of 300 bytes */

typedef struct {
    int32_t pat; /* pattern index, or REF_EMPTY / REF_LONG */
    uint8_t slot;
    uint8_t form; /* 0 = string, 1.. = object variants */
    bool esc;
} ref_t;

/* A field that names the agent or the time: key, level, and its value. */
typedef struct {
    const char *key;
    int level;
    int kind;      /* 0 = string value, 1 = null, 2 = empty string */
    int64_t agent; /* agent index for kind 0 (agent fields) */
    char text[80]; /* the value for kind 0 (time fields) */
} field_t;

typedef struct {
    int topic;
    bad_t bad;
    bool envelope;
    /* outcome, for the truth */
    int whole_dead; /* reason of a dead letter for the whole event, or -1 */
    uint32_t agent; /* n_agents = "unknown" */
    int64_t time_us;
    uint32_t *distinct;
    size_t n_distinct;
    bool flagged, invalid;
    /* message */
    int64_t kafka_ts_ms;
    char key[64];
    size_t key_len; /* 0 = no key */
    /* plan */
    ref_t *refs;
    size_t n_refs;
    slot_t slots[MAX_SLOTS];
    size_t n_slots;
    field_t agents[2], times[2];
    size_t n_agents, n_times;
    int count_level; /* where patterns_count goes, -1 = nowhere */
    int64_t count_value;
    bool count_singular;
    bool empty_section; /* flagged: a patterns section with no available list */
    char corr[48];
    int corr_kind;   /* 0 = missing, 1 = present */
    int decoy_level; /* -1 = no decoys */
    /* --dup-ratio */
    bool has_id; /* writes event_id; false for every event without --dup-ratio */
    char event_id[37];
    bool copy; /* a byte copy follows, near or far, under the same key or another */
    bool copy_near, copy_same_key;
} event_t;

/* A copy waiting for its turn: it goes out once `due` originals have been produced, or at the
 * end of the run. */
typedef struct {
    uint64_t due, seq; /* seq orders copies due together as they were queued */
    int topic;
    char *value; /* owned */
    size_t len;
    char key[64];
    size_t key_len;
    int64_t kafka_ts_ms;
    bool has_id;
    /* Without an ID the copy counts again as its original did (a good event: no dead letter,
     * not flagged). */
    uint32_t agent;
    int64_t time_us;
    uint32_t *distinct; /* owned; NULL when n_distinct is 0 */
    size_t n_distinct;
} copy_t;

/* A binary min-heap of copies by (due, seq). */
typedef struct {
    copy_t *v;
    size_t n, cap;
} copyq_t;

typedef struct {
    const opts_t *o;
    rng_t rng;
    zipf_t zp, za;
    names_t pat, agent;
    buf_t buf;
    truth_t truth;
    uint64_t *seen; /* per pattern: 1 + number of the last event that used it */
    uint64_t event_no;
    int64_t start_us, span_us;
    bool allow_large;
    unsigned bad_total;
    char *large_blob;
    /* --dup-ratio draws from its own generator, so that the events of a seed stay those
     * produced without it (IDs aside). */
    rng_t dup_rng;
    uint64_t copies_planned;
    copyq_t copies;
} gen_t;

static int64_t wall_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void make_uuid(rng_t *r, char out[37])
{
    uint64_t a = rng_next(r), b = rng_next(r);
    snprintf(out, 37, "%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-%04" PRIx32 "-%012" PRIx64,
             (uint32_t)(a >> 32), (uint32_t)(a >> 16) & 0xFFFF, (uint32_t)a & 0xFFF,
             0x8000 | ((uint32_t)(b >> 48) & 0x3FFF), b & UINT64_C(0xFFFFFFFFFFFF));
}

/* Formats t (µs, >= 0) in one of the formats producers use; returns the time the engine must
 * read from the text (fractions truncated to µs, offsets applied). */
static int64_t format_time(rng_t *r, int64_t t, char *out, size_t cap)
{
    int64_t secs = t / 1000000;
    int64_t us = t % 1000000;
    double u = rng_double(r);
    int off_min = 0;
    if (u >= 0.90) {
        static const int offs[] = {330, -480, 60};
        off_min = offs[rng_below(r, 3)];
    }
    time_t local = (time_t)(secs + off_min * 60);
    struct tm tm;
    gmtime_r(&local, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    if (u < 0.30) {
        snprintf(out, cap, "%s.%06" PRId64 "+00:00", base, us);
        return t;
    }
    if (u < 0.50) {
        snprintf(out, cap, "%sZ", base);
        return secs * 1000000;
    }
    if (u < 0.70) {
        snprintf(out, cap, "%s.%03" PRId64 "Z", base, us / 1000);
        return secs * 1000000 + us / 1000 * 1000;
    }
    if (u < 0.85) {
        snprintf(out, cap, "%s.%06" PRId64, base, us);
        return t;
    }
    if (u < 0.90) {
        /* Nanoseconds: the engine cuts the last three digits. */
        snprintf(out, cap, "%s.%06" PRId64 "%03uZ", base, us, (unsigned)rng_below(r, 1000));
        return t;
    }
    int a = off_min < 0 ? -off_min : off_min;
    snprintf(out, cap, "%s.%06" PRId64 "%c%02d:%02d", base, us, off_min < 0 ? '-' : '+', a / 60,
             a % 60);
    return t;
}

static bad_t pick_bad(gen_t *g)
{
    uint64_t x = rng_below(&g->rng, g->bad_total);
    for (int b = 1; b < N_BAD; b++) {
        unsigned w = (b == BAD_TOO_LARGE && !g->allow_large) ? 0 : bad_weight[b];
        if (x < w) {
            return (bad_t)b;
        }
        x -= w;
    }
    return BAD_NO_REFS;
}

/* The ID a reference writes (for REF_* the invalid text). */
static const char *ref_text(const gen_t *g, int32_t pat, size_t *len)
{
    static char long_id[301];
    if (pat == REF_EMPTY) {
        *len = 0;
        return "";
    }
    if (pat == REF_LONG) {
        if (long_id[0] == '\0') {
            memset(long_id, 'L', 300);
        }
        *len = 300;
        return long_id;
    }
    *len = g->pat.len[pat];
    return g->pat.s[pat];
}

static void write_pool_name(gen_t *g, buf_t *b)
{
    size_t p = zipf_draw(&g->zp, &g->rng);
    json_strn(b, g->pat.s[p], g->pat.len[p], false);
}

/* Writes one list element that references nothing. */
static void write_noise(gen_t *g, buf_t *b)
{
    switch (rng_below(&g->rng, 8)) {
    case 0:
        buf_puts(b, "42");
        break;
    case 1:
        buf_puts(b, "null");
        break;
    case 2:
        buf_puts(b, "true");
        break;
    case 3:
        buf_puts(b, "{\"file\":\"patterns/x.md\",\"description\":\"no id\"}");
        break;
    case 4:
        buf_puts(b, "{\"pattern_id\":7,\"id\":null}");
        break;
    case 5:
        /* A nested list is not a reference, whatever it holds. */
        buf_putc(b, '[');
        write_pool_name(g, b);
        buf_putc(b, ']');
        break;
    case 6:
        buf_puts(b, "{\"name\":[\"x\"],\"id\":{}}");
        break;
    default:
        buf_puts(b, "{}");
        break;
    }
}

/* Writes one reference. Form 0 is the plain string; the others are objects whose first
 * non-empty string among pattern_id, id, name is the ID. */
static void write_ref(gen_t *g, buf_t *b, const ref_t *r)
{
    size_t len;
    const char *s = ref_text(g, r->pat, &len);
    switch (r->form) {
    case 0:
        json_strn(b, s, len, r->esc);
        break;
    case 1:
        buf_puts(b, "{\"pattern_id\":");
        json_strn(b, s, len, r->esc);
        buf_puts(b, ",\"version\":\"1.0\"}");
        break;
    case 2:
        buf_puts(b, "{\"id\":");
        json_strn(b, s, len, r->esc);
        buf_puts(b, "}");
        break;
    case 3:
        buf_puts(b, "{\"name\":");
        json_strn(b, s, len, r->esc);
        buf_puts(b, ",\"file\":\"patterns/p.md\"}");
        break;
    case 4:
        buf_puts(b, "{\"pattern_id\":\"\",\"id\":");
        json_strn(b, s, len, r->esc);
        buf_puts(b, "}");
        break;
    case 5:
        buf_puts(b, "{\"pattern_id\":null,\"name\":");
        json_strn(b, s, len, r->esc);
        buf_puts(b, "}");
        break;
    case 6:
        /* The first present key wins: name and id are decoys. */
        buf_puts(b, "{\"name\":");
        write_pool_name(g, b);
        buf_puts(b, ",\"pattern_id\":");
        json_strn(b, s, len, r->esc);
        buf_puts(b, ",\"id\":");
        write_pool_name(g, b);
        buf_puts(b, "}");
        break;
    case 7:
        buf_puts(b, "{\"id\":17,\"name\":");
        json_strn(b, s, len, r->esc);
        buf_puts(b, "}");
        break;
    case 8:
        buf_puts(b, "{\"pattern_id\":\"\",\"id\":\"\",\"name\":");
        json_strn(b, s, len, r->esc);
        buf_puts(b, ",\"file\":\"p.md\",\"description\":\"snapshot entry\"}");
        break;
    default:
        /* Snapshot entry: {name, file, description}. */
        buf_puts(b, "{\"name\":");
        json_strn(b, s, len, r->esc);
        buf_puts(b, ",\"file\":\"patterns/p.md\",\"description\":\"a pattern\",\"tags\":[]}");
        break;
    }
}

/* Writes the list of the references assigned to slot si, with noise now and then. */
static void write_list(gen_t *g, buf_t *b, const event_t *ev, size_t si)
{
    bool first = true;
    bool noise = rng_chance(&g->rng, 0.1);
    buf_putc(b, '[');
    for (size_t i = 0; i < ev->n_refs; i++) {
        if (ev->refs[i].slot != si) {
            continue;
        }
        if (!first) {
            buf_putc(b, ',');
        }
        first = false;
        if (noise && rng_chance(&g->rng, 0.3)) {
            write_noise(g, b);
            buf_putc(b, ',');
        }
        write_ref(g, b, &ev->refs[i]);
    }
    if (noise) {
        if (!first) {
            buf_putc(b, ',');
        }
        write_noise(g, b);
    }
    buf_putc(b, ']');
}

static size_t slot_refs(const event_t *ev, size_t si)
{
    size_t n = 0;
    for (size_t i = 0; i < ev->n_refs; i++) {
        n += ev->refs[i].slot == si;
    }
    return n;
}

static void write_slot(gen_t *g, buf_t *b, bool *first, const event_t *ev, size_t si)
{
    const slot_t *s = &ev->slots[si];
    size_t n = slot_refs(ev, si);
    switch (s->kind) {
    case K_M_MAIN:
        if (s->variant == 0) {
            json_key(b, first, "patterns");
            write_list(g, b, ev, si);
        } else if (s->variant == 1) {
            json_key(b, first, "patterns");
            buf_puts(b, "{\"available\":");
            write_list(g, b, ev, si);
            buf_printf(b, ",\"total_count\":%zu,\"query_time_ms\":%u}", n,
                       (unsigned)rng_below(&g->rng, 50));
        } else if (s->variant == 2) {
            json_key(b, first, "manifest");
            buf_puts(b, "{\"version\":\"2.1.0\",\"patterns\":");
            write_list(g, b, ev, si);
            buf_putc(b, '}');
        } else {
            json_key(b, first, "manifest");
            buf_puts(b, "{\"patterns\":{\"total_count\":");
            buf_printf(b, "%zu,\"available\":", n);
            write_list(g, b, ev, si);
            buf_puts(b, "},\"infrastructure\":{\"postgres\":\"up\"}}");
        }
        break;
    case K_M_DISCOVERED:
        json_key(b, first, "patterns_discovered");
        write_list(g, b, ev, si);
        break;
    case K_IDS:
        json_key(b, first, "pattern_ids");
        if (s->variant == 1) {
            /* One ID as a plain string (the planner made sure n == 1 and it is a string). */
            for (size_t i = 0; i < ev->n_refs; i++) {
                if (ev->refs[i].slot == si) {
                    write_ref(g, b, &ev->refs[i]);
                }
            }
        } else {
            write_list(g, b, ev, si);
        }
        break;
    case K_M_SNAPSHOT:
        json_key(b, first, "full_manifest_snapshot");
        buf_puts(b, "{\"patterns\":{\"available\":");
        write_list(g, b, ev, si);
        buf_printf(b, ",\"total_count\":%zu},\"agents\":{\"count\":3}}", n);
        break;
    case K_A_PATTERNS:
        json_key(b, first, "patterns");
        write_list(g, b, ev, si);
        break;
    case K_A_METADATA:
        json_key(b, first, "metadata");
        buf_puts(b, "{\"source\":\"hook\",\"patterns\":");
        write_list(g, b, ev, si);
        buf_putc(b, '}');
        break;
    case K_R_USED:
        json_key(b, first, "patterns_used");
        write_list(g, b, ev, si);
        break;
    case K_R_CONF:
        json_key(b, first, "confidence_components");
        buf_puts(b, "{\"trigger\":0.9,\"context\":0.75,\"patterns\":");
        write_list(g, b, ev, si);
        buf_putc(b, '}');
        break;
    default:
        json_key(b, first, "context");
        buf_puts(b, "{\"domain\":\"api\",\"patterns\":");
        write_list(g, b, ev, si);
        buf_putc(b, '}');
        break;
    }
}

/* Fields that look like references but are not read by the default rules. */
static void write_decoys(gen_t *g, buf_t *b, bool *first, const event_t *ev)
{
    rng_t *r = &g->rng;
    if (ev->topic == TOPIC_ACTIONS) {
        json_key(b, first, "action_details");
        buf_puts(b, "{\"pattern\":");
        if (rng_chance(r, 0.5)) {
            write_pool_name(g, b);
        } else {
            json_str(b, "def\\s+\\w+\\(");
        }
        buf_puts(b, ",\"glob_pattern\":");
        if (rng_chance(r, 0.5)) {
            write_pool_name(g, b);
        } else {
            json_str(b, "**/*.py");
        }
        buf_puts(b, ",\"path\":\"/src\"}");
        return;
    }
    json_key(b, first, "confidence_scores");
    buf_putc(b, '{');
    unsigned n = 1 + (unsigned)rng_below(r, 3);
    for (unsigned i = 0; i < n; i++) {
        if (i > 0) {
            buf_putc(b, ',');
        }
        /* Keys must differ within the object. */
        size_t p = (zipf_draw(&g->zp, r) + i) % g->pat.n;
        json_strn(b, g->pat.s[p], g->pat.len[p], false);
        buf_printf(b, ":0.%02u", (unsigned)rng_below(r, 100));
    }
    buf_putc(b, '}');
    if (ev->topic == TOPIC_ROUTING) {
        json_key(b, first, "alternatives");
        buf_puts(b, "[{\"agent\":\"agent-3\",\"score\":0.4}]");
        json_key(b, first, "reasoning");
        buf_puts(b, "\"matched patterns by name\"");
    }
}

static void write_fields(gen_t *g, buf_t *b, bool *first, const field_t *f, size_t n, int level)
{
    for (size_t i = 0; i < n; i++) {
        if (f[i].level != level) {
            continue;
        }
        json_key(b, first, f[i].key);
        if (f[i].kind == 1) {
            buf_puts(b, "null");
        } else if (f[i].kind == 2) {
            buf_puts(b, "\"\"");
        } else if (f[i].agent >= 0) {
            json_strn(b, g->agent.s[f[i].agent], g->agent.len[f[i].agent],
                      rng_chance(&g->rng, 0.1));
        } else {
            json_str(b, f[i].text);
        }
    }
}

/* Writes the members of one level (0 = the event, 1 = its payload) into an open object. */
static void write_level(gen_t *g, buf_t *b, const event_t *ev, int level)
{
    static const char *const types[N_TOPICS] = {"manifest_injected", "agent_action",
                                                "routing_decision"};
    bool first = true;
    rng_t *r = &g->rng;
    if (level == 0) {
        if (ev->envelope) {
            json_key(b, &first, "event_type");
            json_str(b, types[ev->topic]);
            /* Drawn with --dup-ratio too, where ev's own ID (or none) replaces it: the rest of
             * the event stays what the seed makes without --dup-ratio. */
            char id[37];
            make_uuid(r, id);
            if (g->o->dup_ratio <= 0 || ev->has_id) {
                json_key(b, &first, "event_id");
                json_str(b, ev->has_id ? ev->event_id : id);
            }
            json_key(b, &first, "source");
            json_str(b, "omniclaude");
        } else if (ev->has_id) {
            json_key(b, &first, "event_id");
            json_str(b, ev->event_id);
        }
        if (ev->corr_kind) {
            json_key(b, &first, "correlation_id");
            json_str(b, ev->corr);
        }
    }
    write_fields(g, b, &first, ev->agents, ev->n_agents, level);
    write_fields(g, b, &first, ev->times, ev->n_times, level);
    if (level == (ev->envelope ? 1 : 0)) {
        switch (ev->topic) {
        case TOPIC_MANIFEST:
            json_key(b, &first, "manifest_version");
            json_str(b, "2.0");
            break;
        case TOPIC_ACTIONS:
            json_key(b, &first, "action_type");
            json_str(b, "tool_call");
            json_key(b, &first, "tool_name");
            json_str(b, rng_chance(r, 0.5) ? "Grep" : "Read");
            json_key(b, &first, "duration_ms");
            buf_printf(b, "%u", (unsigned)rng_below(r, 500));
            break;
        default:
            json_key(b, &first, "confidence");
            buf_printf(b, "0.%02u", (unsigned)rng_below(r, 100));
            json_key(b, &first, "user_request");
            json_str(b, "refactor the \"patterns\" module");
            break;
        }
    }
    for (size_t i = 0; i < ev->n_slots; i++) {
        if (ev->slots[i].level == level) {
            write_slot(g, b, &first, ev, i);
        }
    }
    if (ev->count_level == level) {
        json_key(b, &first, ev->count_singular ? "pattern_count" : "patterns_count");
        buf_printf(b, "%" PRId64, ev->count_value);
    }
    if (ev->empty_section && level == 0) {
        /* A patterns section without an available list: no list, and its keys are not IDs. */
        json_key(b, &first, "patterns");
        buf_puts(b, "{\"total_count\":3,\"query_time_ms\":7}");
    }
    if (ev->decoy_level == level) {
        write_decoys(g, b, &first, ev);
    }
    if (level == 0 && ev->envelope) {
        json_key(b, &first, "payload");
        buf_putc(b, '{');
        write_level(g, b, ev, 1);
        buf_putc(b, '}');
    }
}

/* Plans who the agent is and where it is written. */
static void plan_agent(gen_t *g, event_t *ev)
{
    rng_t *r = &g->rng;
    uint32_t unknown = (uint32_t)g->agent.n;
    int64_t a = (int64_t)zipf_draw(&g->za, r);
    int64_t other = (a + 1 + (int64_t)rng_below(r, g->agent.n)) % (int64_t)g->agent.n;
    int lv = ev->envelope && rng_chance(r, 0.7) ? 1 : 0;
    int lv2 = ev->envelope && rng_chance(r, 0.5) ? 1 : 0;
    double u = rng_double(r);
    field_t *f = ev->agents;
    ev->n_agents = 0;
    if (ev->topic == TOPIC_ROUTING) {
        if (u < 0.70) {
            f[ev->n_agents++] = (field_t){"selected_agent", lv, 0, a, ""};
            ev->agent = (uint32_t)a;
        } else if (u < 0.78) {
            f[ev->n_agents++] = (field_t){"agent_name", lv, 0, a, ""};
            ev->agent = (uint32_t)a;
        } else if (u < 0.86) {
            /* selected_agent wins over agent_name, at whatever level each is. */
            f[ev->n_agents++] = (field_t){"selected_agent", lv, 0, a, ""};
            f[ev->n_agents++] = (field_t){"agent_name", lv2, 0, other, ""};
            ev->agent = (uint32_t)a;
        } else if (u < 0.91) {
            f[ev->n_agents++] = (field_t){"selected_agent", lv2, 1, -1, ""};
            f[ev->n_agents++] = (field_t){"agent_name", lv, 0, a, ""};
            ev->agent = (uint32_t)a;
        } else if (u < 0.96) {
            ev->agent = unknown;
        } else {
            f[ev->n_agents++] = (field_t){"selected_agent", lv, 1, -1, ""};
            ev->agent = unknown;
        }
        return;
    }
    if (u < 0.84) {
        f[ev->n_agents++] = (field_t){"agent_name", lv, 0, a, ""};
        ev->agent = (uint32_t)a;
    } else if (u < 0.90) {
        f[ev->n_agents++] = (field_t){"agent_name", 0, 1, -1, ""};
        if (ev->envelope && rng_chance(r, 0.5)) {
            /* null on the envelope, the name in the payload */
            f[ev->n_agents++] = (field_t){"agent_name", 1, 0, a, ""};
            ev->agent = (uint32_t)a;
        } else {
            ev->agent = unknown;
        }
    } else if (u < 0.96) {
        ev->agent = unknown;
    } else {
        f[ev->n_agents++] = (field_t){"agent_name", lv, 2, -1, ""};
        ev->agent = unknown;
    }
}

/* Plans the event time, its text and the Kafka timestamp. */
static void plan_time(gen_t *g, event_t *ev, int64_t now_ms)
{
    static const char *const unusable[] = {"yesterday", "2025-13-45T00:00:00Z", "1730732531",
                                           "15:02:11",  "2025-11-04T25:00:00Z", "2025-02-30"};
    rng_t *r = &g->rng;
    int64_t t = g->start_us + (int64_t)rng_below(r, (uint64_t)g->span_us);
    int lv = ev->envelope && rng_chance(r, 0.4) ? 1 : 0;
    double u = rng_double(r);
    field_t *f = ev->times;
    ev->n_times = 0;
    ev->kafka_ts_ms = now_ms;
    if (u < 0.40) {
        f[0] = (field_t){"timestamp", lv, 0, -1, ""};
        ev->time_us = format_time(r, t, f[0].text, sizeof f[0].text);
        ev->n_times = 1;
    } else if (u < 0.55) {
        f[0] = (field_t){"created_at", lv, 0, -1, ""};
        ev->time_us = format_time(r, t, f[0].text, sizeof f[0].text);
        ev->n_times = 1;
    } else if (u < 0.65) {
        f[0] = (field_t){"timestamp", lv, 1, -1, ""};
        f[1] = (field_t){"created_at", lv, 0, -1, ""};
        ev->time_us = format_time(r, t, f[1].text, sizeof f[1].text);
        ev->n_times = 2;
    } else {
        /* No usable time: the engine takes the Kafka timestamp (ms). */
        ev->kafka_ts_ms = t / 1000;
        ev->time_us = ev->kafka_ts_ms * 1000;
        if (u >= 0.95) {
            f[0] = (field_t){"timestamp", lv, 0, -1, ""};
            snprintf(f[0].text, sizeof f[0].text, "%s", unusable[rng_below(r, 6)]);
            ev->n_times = 1;
        }
    }
}

static void plan_refs(gen_t *g, event_t *ev)
{
    rng_t *r = &g->rng;
    const opts_t *o = g->o;
    size_t k = 0;
    ev->n_refs = 0;
    if (ev->bad != BAD_NO_REFS && ev->bad != BAD_FLAGGED) {
        k = o->refs_exact > 0 ? o->refs_exact : (size_t)rng_below(r, (uint64_t)o->refs_max + 1);
    }
    if (ev->bad == BAD_INVALID_ID && k == 0) {
        k = 1;
    }
    for (size_t i = 0; i < k; i++) {
        int32_t p = (int32_t)zipf_draw(&g->zp, r);
        for (size_t j = 0; o->refs_exact > 0 && j < i; j++) {
            if (ev->refs[j].pat == p) { /* drawn already: draw again, from the start */
                p = (int32_t)zipf_draw(&g->zp, r);
                j = (size_t)-1;
            }
        }
        ev->refs[ev->n_refs++] = (ref_t){p, 0, 0, false};
    }
    if (k > 0 && rng_chance(r, 0.15)) {
        /* The same pattern again, maybe spelled differently: it counts once. */
        ev->refs[ev->n_refs++] = (ref_t){ev->refs[rng_below(r, k)].pat, 0, 0, false};
    }
    if (ev->bad == BAD_INVALID_ID) {
        size_t at = (size_t)rng_below(r, ev->n_refs + 1);
        memmove(&ev->refs[at + 1], &ev->refs[at], (ev->n_refs - at) * sizeof(ref_t));
        ev->refs[at] = (ref_t){rng_chance(r, 0.8) ? REF_EMPTY : REF_LONG, 0, 0, false};
        ev->n_refs++;
        ev->invalid = true;
    }

    /* Slots: distinct (kind, level) pairs of this topic. */
    ev->n_slots = 0;
    if (ev->bad == BAD_NO_REFS || ev->bad == BAD_FLAGGED) {
        return;
    }
    slot_t cand[MAX_SLOTS];
    size_t nc = 0;
    for (int lv = 0; lv <= (ev->envelope ? 1 : 0); lv++) {
        for (int i = 0; i < 4; i++) {
            if (topic_kinds[ev->topic][i] >= 0) {
                cand[nc++] = (slot_t){topic_kinds[ev->topic][i], lv, 0};
            }
        }
    }
    size_t m = 1 + (size_t)rng_below(r, nc < 3 ? nc : 3);
    for (size_t i = 0; i < m; i++) {
        size_t j = i + (size_t)rng_below(r, nc - i);
        slot_t tmp = cand[i];
        cand[i] = cand[j];
        cand[j] = tmp;
        ev->slots[ev->n_slots] = cand[i];
        slot_t *s = &ev->slots[ev->n_slots++];
        s->variant = s->kind == K_M_MAIN ? (int)rng_below(r, 4) : 0;
    }
    for (size_t i = 0; i < ev->n_refs; i++) {
        ref_t *rf = &ev->refs[i];
        rf->slot = (uint8_t)rng_below(r, ev->n_slots);
        int kind = ev->slots[rf->slot].kind;
        rf->esc = rf->pat >= 0 && rng_chance(r, 0.1);
        if (rf->pat < 0 || kind == K_M_DISCOVERED || kind == K_IDS) {
            rf->form = 0; /* invalid IDs are strings: an object with "" falls back */
        } else if (kind == K_M_SNAPSHOT) {
            rf->form = rng_chance(r, 0.8) ? 9 : (uint8_t)(1 + rng_below(r, 8));
        } else {
            rf->form = rng_chance(r, 0.5) ? 0 : (uint8_t)(1 + rng_below(r, 8));
        }
    }
    for (size_t i = 0; i < ev->n_slots; i++) {
        if (ev->slots[i].kind == K_IDS && slot_refs(ev, i) == 1 && rng_chance(r, 0.4)) {
            ev->slots[i].variant = 1; /* pattern_ids as one string */
        }
    }
}

/* The distinct valid pattern IDs of the plan. */
static void collect_distinct(gen_t *g, event_t *ev)
{
    uint64_t stamp = ++g->event_no;
    ev->n_distinct = 0;
    for (size_t i = 0; i < ev->n_refs; i++) {
        int32_t p = ev->refs[i].pat;
        if (p >= 0 && g->seen[p] != stamp) {
            g->seen[p] = stamp;
            ev->distinct[ev->n_distinct++] = (uint32_t)p;
        }
    }
}

static void gen_bad_whole(gen_t *g, event_t *ev)
{
    rng_t *r = &g->rng;
    buf_t *b = &g->buf;
    switch (ev->bad) {
    case BAD_NOT_JSON: {
        static const char *const v[] = {"not-json",
                                        "{\"agent_name\":\"agent-1\",\"patterns\":[\"pat-000001\"",
                                        "{'patterns': ['pat-000001']}", "", "  \n"};
        buf_puts(b, v[rng_below(r, 5)]);
        ev->whole_dead = R_NOT_JSON;
        break;
    }
    case BAD_NOT_UTF8: {
        static const char *const v[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf5\x80\x80\x80",
                                        "\xe6\x97"};
        buf_puts(b, "{\"agent_name\":\"agent-1\",\"patterns\":[\"pat-000001\"],\"note\":\"");
        buf_puts(b, v[rng_below(r, 5)]);
        buf_puts(b, "\"}");
        ev->whole_dead = R_NOT_UTF8;
        break;
    }
    case BAD_NOT_OBJECT: {
        static const char *const v[] = {"[1,2]", "\"just a string\"", "42", "null",
                                        " [ {\"patterns\": [\"pat-000001\"]} ]"};
        buf_puts(b, v[rng_below(r, 5)]);
        ev->whole_dead = R_NOT_OBJECT;
        break;
    }
    default: {
        /* Well-formed, with references that must not count: the engine never decodes it. */
        buf_puts(b, "{\"agent_name\":\"agent-1\",\"patterns\":[");
        write_pool_name(g, b);
        buf_puts(b, "],\"patterns_used\":[\"pat-000000\"],\"blob\":\"");
        buf_put(b, g->large_blob, LARGE_EVENT_BYTES);
        buf_puts(b, "\"}");
        ev->whole_dead = R_TOO_LARGE;
        break;
    }
    }
}

/* With --dup-ratio, for an event that reaches the rules: its ID, and whether and how a copy
 * follows it. */
static void plan_ids(gen_t *g, event_t *ev)
{
    rng_t *r = &g->dup_rng;
    const opts_t *o = g->o;
    if (o->dup_ratio <= 0) {
        return;
    }
    bool good = ev->bad == BAD_NONE;
    ev->has_id = !good || !rng_chance(r, o->no_id_ratio);
    if (ev->has_id) {
        make_uuid(r, ev->event_id);
    } else {
        /* The default rules would make an ID of correlation_id + timestamp. */
        ev->corr_kind = 0;
    }
    if (!good || !rng_chance(r, o->dup_ratio)) {
        return;
    }
    /* Taken in turn rather than drawn, so that even a small run has every kind of copy. */
    unsigned turn = (unsigned)(g->copies_planned++ % 4);
    ev->copy = true;
    ev->copy_near = turn % 2 == 0;
    ev->copy_same_key = turn < 2;
    if (ev->copy_same_key && ev->key_len == 0) {
        /* librdkafka spreads keyless messages at random: only a key keeps the copy on the
         * original's partition. */
        make_uuid(r, ev->key);
        ev->key_len = strlen(ev->key);
    }
}

/* Builds the next event into g->buf and plans its outcome in ev. */
static void gen_event(gen_t *g, event_t *ev)
{
    rng_t *r = &g->rng;
    g->buf.len = 0;
    ev->bad = BAD_NONE;
    if (g->o->bad_ratio > 0 && rng_chance(r, g->o->bad_ratio)) {
        ev->bad = pick_bad(g);
    }
    ev->topic = ev->bad == BAD_FLAGGED ? TOPIC_MANIFEST : (int)rng_below(r, N_TOPICS);
    ev->whole_dead = -1;
    ev->flagged = ev->invalid = false;
    ev->has_id = ev->copy = false;
    ev->n_distinct = 0;
    ev->envelope = rng_chance(r, 0.25);
    int64_t now_ms = wall_us() / 1000;

    /* Correlation id: in the event and often as the message key. */
    double u = rng_double(r);
    ev->corr_kind = 1;
    if (u < 0.6) {
        make_uuid(r, ev->corr);
    } else if (u < 0.75) {
        snprintf(ev->corr, sizeof ev->corr, "corr-%03u", (unsigned)rng_below(r, 1000));
    } else if (u < 0.8) {
        ev->corr[0] = '\0';
    } else if (u < 0.85) {
        snprintf(ev->corr, sizeof ev->corr, "not-a-uuid-%08" PRIx64, rng_next(r) >> 32);
    } else {
        ev->corr_kind = 0;
        make_uuid(r, ev->corr);
    }
    ev->key_len = 0;
    if (rng_chance(r, 0.6)) {
        ev->key_len = (size_t)snprintf(ev->key, sizeof ev->key, "%s", ev->corr);
    }

    if (ev->bad == BAD_NOT_JSON || ev->bad == BAD_NOT_UTF8 || ev->bad == BAD_NOT_OBJECT ||
        ev->bad == BAD_TOO_LARGE) {
        ev->kafka_ts_ms = now_ms;
        gen_bad_whole(g, ev);
        return;
    }

    plan_ids(g, ev);
    plan_refs(g, ev);
    collect_distinct(g, ev);
    plan_agent(g, ev);
    plan_time(g, ev, now_ms);
    ev->count_level = -1;
    ev->empty_section = false;
    int lv = ev->envelope && rng_chance(r, 0.5) ? 1 : 0;
    if (ev->bad == BAD_FLAGGED) {
        ev->count_level = lv;
        ev->count_value = 1 + (int64_t)rng_below(r, 20);
        ev->count_singular = rng_chance(r, 0.4);
        ev->empty_section = rng_chance(r, 0.3);
        ev->flagged = true;
    } else if (ev->topic == TOPIC_MANIFEST && rng_chance(r, 0.3)) {
        /* A count next to a list (possibly empty) is not a gap. */
        ev->count_level = lv;
        ev->count_value = (int64_t)ev->n_distinct;
        ev->count_singular = rng_chance(r, 0.3);
    }
    ev->decoy_level = -1;
    if (rng_chance(r, 0.35) || ev->bad == BAD_NO_REFS) {
        ev->decoy_level = ev->envelope && rng_chance(r, 0.5) ? 1 : 0;
    }
    buf_putc(&g->buf, '{');
    write_level(g, &g->buf, ev, 0);
    buf_putc(&g->buf, '}');
}

/* Byte order of two pattern names, as PostgreSQL's COLLATE "C" orders them. */
static int name_cmp(const gen_t *g, uint32_t a, uint32_t b)
{
    size_t la = g->pat.len[a], lb = g->pat.len[b];
    int c = memcmp(g->pat.s[a], g->pat.s[b], la < lb ? la : lb);
    return c != 0 ? c : (la > lb) - (la < lb);
}

/* Every pair of the event's distinct patterns, as the engine records them: events with more
 * than cooccurrence_max_patterns record none. */
static void truth_pairs(gen_t *g, const event_t *ev)
{
    if (g->o->pairs_max == 0 || ev->n_distinct < 2 || ev->n_distinct > g->o->pairs_max) {
        return;
    }
    for (size_t i = 0; i + 1 < ev->n_distinct; i++) {
        for (size_t j = i + 1; j < ev->n_distinct; j++) {
            uint32_t a = ev->distinct[i], b = ev->distinct[j];
            if (name_cmp(g, a, b) > 0) {
                uint32_t x = a;
                a = b;
                b = x;
            }
            cell_t *c = table_get(&g->truth.cooc, ((uint64_t)a << 32) | b);
            use_time(&c->count, &c->first, &c->last, ev->time_us);
        }
    }
}

static void truth_apply(gen_t *g, const event_t *ev)
{
    truth_t *t = &g->truth;
    int tp = ev->topic;
    t->events[tp]++;
    if (ev->whole_dead >= 0) {
        t->dead[tp]++;
        t->dl[tp][ev->whole_dead]++;
        return;
    }
    for (size_t i = 0; i < ev->n_distinct; i++) {
        truth_use(t, ev->distinct[i], ev->agent, ev->time_us);
    }
    truth_pairs(g, ev);
    if (ev->n_distinct == 0) {
        t->without[tp]++;
    }
    if (ev->flagged) {
        t->flagged[tp]++;
    }
    if (ev->invalid) {
        t->dead[tp]++;
        t->dl[tp][R_INVALID_ID]++;
    }
}

static int truth_write(const gen_t *g, const char *path)
{
    const truth_t *t = &g->truth;
    const opts_t *o = g->o;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "pt-loadgen: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (size_t p = 0; p < g->pat.n; p++) {
        const usage_t *u = &t->patterns[p];
        if (u->count == 0) {
            continue;
        }
        fputc('P', f);
        tsv_field(f, g->pat.s[p], g->pat.len[p]);
        fprintf(f, "\t%" PRIu64 "\t%" PRId64 "\t%" PRId64 "\n", u->count, u->first, u->last);
    }
    for (size_t i = 0; i < t->pairs.cap; i++) {
        const cell_t *c = &t->pairs.cells[i];
        if (c->key == EMPTY_KEY) {
            continue;
        }
        size_t p = (size_t)(c->key >> 32), a = (size_t)(c->key & 0xFFFFFFFFu);
        fputc('A', f);
        tsv_field(f, g->pat.s[p], g->pat.len[p]);
        if (a == g->agent.n) {
            tsv_field(f, "unknown", 7);
        } else {
            tsv_field(f, g->agent.s[a], g->agent.len[a]);
        }
        fprintf(f, "\t%" PRIu64 "\t%" PRId64 "\t%" PRId64 "\n", c->count, c->first, c->last);
    }
    for (size_t i = 0; i < t->hours.cap; i++) {
        const cell_t *c = &t->hours.cells[i];
        if (c->key == EMPTY_KEY) {
            continue;
        }
        size_t p = (size_t)(c->key >> 40);
        fputc('H', f);
        tsv_field(f, g->pat.s[p], g->pat.len[p]);
        fprintf(f, "\t%" PRIu64 "\t%" PRIu64 "\n", c->key & ((UINT64_C(1) << 40) - 1), c->count);
    }
    for (size_t i = 0; i < t->cooc.cap; i++) {
        const cell_t *c = &t->cooc.cells[i];
        if (c->key == EMPTY_KEY) {
            continue;
        }
        size_t a = (size_t)(c->key >> 32), b = (size_t)(c->key & 0xFFFFFFFFu);
        fputc('C', f);
        tsv_field(f, g->pat.s[a], g->pat.len[a]);
        tsv_field(f, g->pat.s[b], g->pat.len[b]);
        fprintf(f, "\t%" PRIu64 "\t%" PRId64 "\n", c->count, c->last);
    }
    for (int tp = 0; tp < N_TOPICS; tp++) {
        if (t->events[tp] == 0) {
            continue;
        }
        fprintf(f, "T\t");
        for (const char *s = o->prefix; *s; s++) {
            fputc(*s, f); /* topic names are [A-Za-z0-9._-]: nothing to escape */
        }
        fprintf(f, "%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n", topic_base[tp],
                t->events[tp], t->without[tp], t->dead[tp], t->flagged[tp]);
        for (int rs = 0; rs < N_REASONS; rs++) {
            if (t->dl[tp][rs] > 0) {
                fprintf(f, "D\t%s%s\t%s\t%" PRIu64 "\n", o->prefix, topic_base[tp], reason_text[rs],
                        t->dl[tp][rs]);
            }
        }
        if (t->dups[tp] > 0) {
            fprintf(f, "U\t%s%s\t%" PRIu64 "\n", o->prefix, topic_base[tp], t->dups[tp]);
        }
    }
    if (ferror(f) | (fclose(f) != 0)) {
        fprintf(stderr, "pt-loadgen: writing %s failed\n", path);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Copies (--dup-ratio) */

/* NULL for n == 0; aborts when memory runs out, as buf_reserve does. */
static void *memdup_or_die(const void *p, size_t n)
{
    if (n == 0) {
        return NULL;
    }
    void *d = malloc(n);
    if (d == NULL) {
        fprintf(stderr, "pt-loadgen: out of memory\n");
        abort();
    }
    memcpy(d, p, n);
    return d;
}

static bool copy_before(const copy_t *a, const copy_t *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

/* Takes ownership of c's buffers. */
static void copyq_push(copyq_t *q, const copy_t *c)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 256;
        copy_t *nv = realloc(q->v, cap * sizeof(copy_t));
        if (nv == NULL) {
            fprintf(stderr, "pt-loadgen: out of memory\n");
            abort();
        }
        q->v = nv;
        q->cap = cap;
    }
    size_t i = q->n++;
    while (i > 0 && copy_before(c, &q->v[(i - 1) / 2])) {
        q->v[i] = q->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->v[i] = *c;
}

/* Moves the first copy (q->n > 0) to *out; the caller owns its buffers. */
static void copyq_pop(copyq_t *q, copy_t *out)
{
    *out = q->v[0];
    copy_t last = q->v[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) {
            break;
        }
        if (c + 1 < q->n && copy_before(&q->v[c + 1], &q->v[c])) {
            c++;
        }
        if (!copy_before(&q->v[c], &last)) {
            break;
        }
        q->v[i] = q->v[c];
        i = c;
    }
    if (q->n > 0) {
        q->v[i] = last;
    }
}

static void copy_free(copy_t *c)
{
    free(c->value);
    free(c->distinct);
}

static void copyq_free(copyq_t *q)
{
    for (size_t i = 0; i < q->n; i++) {
        copy_free(&q->v[i]);
    }
    free(q->v);
}

/* Queues the copy of ev, just produced as original number n, whose bytes are still in g->buf. */
static void copy_plan(gen_t *g, const event_t *ev, uint64_t n)
{
    rng_t *r = &g->dup_rng;
    uint64_t half = g->o->events / 2 > 0 ? g->o->events / 2 : 1;
    copy_t c = {
        .due = n + (ev->copy_near ? 1 + rng_below(r, 20) : half + rng_below(r, half / 10 + 1)),
        .seq = g->copies_planned,
        .topic = ev->topic,
        .value = memdup_or_die(g->buf.p, g->buf.len),
        .len = g->buf.len,
        .kafka_ts_ms = ev->kafka_ts_ms, /* the time of an event without a usable one */
        .has_id = ev->has_id,
    };
    if (ev->copy_same_key) {
        memcpy(c.key, ev->key, ev->key_len);
        c.key_len = ev->key_len;
    } else {
        make_uuid(r, c.key);
        c.key_len = strlen(c.key);
    }
    if (!c.has_id) {
        c.agent = ev->agent;
        c.time_us = ev->time_us;
        c.n_distinct = ev->n_distinct;
        c.distinct = memdup_or_die(ev->distinct, ev->n_distinct * sizeof(uint32_t));
    }
    copyq_push(&g->copies, &c);
}

/* The engine recognises a copy by its ID and counts it as consumed and a duplicate only;
 * without an ID it cannot tell the copy from a new event. */
static void truth_copy(gen_t *g, const copy_t *c)
{
    if (c->has_id) {
        g->truth.events[c->topic]++;
        g->truth.dups[c->topic]++;
        return;
    }
    event_t ev = {
        .topic = c->topic,
        .whole_dead = -1,
        .agent = c->agent,
        .time_us = c->time_us,
        .distinct = c->distinct,
        .n_distinct = c->n_distinct,
    };
    truth_apply(g, &ev);
}

/* ---------------------------------------------------------------------------------------- */
/* Kafka */

typedef struct {
    uint64_t delivered, failed;
} dr_state_t;

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    dr_state_t *st = opaque;
    if (m->err) {
        if (st->failed < 5) {
            fprintf(stderr, "pt-loadgen: delivery to %s failed: %s\n", rd_kafka_topic_name(m->rkt),
                    rd_kafka_err2str(m->err));
        }
        st->failed++;
    } else {
        st->delivered++;
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    fprintf(stderr, "pt-loadgen: kafka: %s: %s\n", rd_kafka_err2name((rd_kafka_resp_err_t)err),
            reason);
}

static rd_kafka_t *producer_new(const opts_t *o, dr_state_t *st)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *props[][2] = {
        {"bootstrap.servers", o->brokers},
        {"client.id", "pt-loadgen"},
        {"acks", "all"},
        {"enable.idempotence", "true"},
        {"linger.ms", "5"},
        {"batch.num.messages", "10000"},
        {"batch.size", "1000000"},
        {"message.max.bytes", "4000000"},
        {"queue.buffering.max.messages", "200000"},
        {"compression.codec", o->compression},
    };
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
        if (rd_kafka_conf_set(conf, props[i][0], props[i][1], err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
            fprintf(stderr, "pt-loadgen: %s: %s\n", props[i][0], err);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    if (o->in_flight > 0) {
        char n[16];
        snprintf(n, sizeof n, "%u", o->in_flight);
        if (rd_kafka_conf_set(conf, "max.in.flight.requests.per.connection", n, err, sizeof err) !=
            RD_KAFKA_CONF_OK) {
            fprintf(stderr, "pt-loadgen: max.in.flight.requests.per.connection: %s\n", err);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, st);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk == NULL) {
        fprintf(stderr, "pt-loadgen: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return rk;
}

static volatile sig_atomic_t stop_requested;

/* The first SIGINT/SIGTERM stops producing (what was queued is still delivered and the truth
 * written); a second one ends the process. */
static void on_signal(int sig)
{
    stop_requested = 1;
    signal(sig, SIG_DFL);
}

/* Queues one message (a copy of value), serving delivery reports while librdkafka's queue is
 * full. */
static rd_kafka_resp_err_t produce(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *value,
                                   size_t len, const char *key, size_t key_len, int64_t ts_ms)
{
    rd_kafka_resp_err_t err;
    for (;;) {
        err = rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_VALUE((void *)value, len),
                                RD_KAFKA_V_KEY(key_len ? key : NULL, key_len),
                                RD_KAFKA_V_TIMESTAMP(ts_ms),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            return err;
        }
        rd_kafka_poll(rk, 50);
    }
}

/* Sleeps (serving delivery reports) until `until` on the monotonic clock. */
static void wait_until(rd_kafka_t *rk, double until)
{
    double now;
    while ((now = mono_s()) < until && !stop_requested) {
        int ms = (int)((until - now) * 1000);
        if (ms >= 1) {
            rd_kafka_poll(rk, ms);
        } else {
            struct timespec ts = {0, (long)((until - now) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---------------------------------------------------------------------------------------- */

static int gen_init(gen_t *g, const opts_t *o)
{
    memset(g, 0, sizeof *g);
    g->o = o;
    rng_seed(&g->rng, o->seed);
    rng_seed(&g->dup_rng, mix64(o->seed ^ UINT64_C(0x6475702d72616e64)));
    if (zipf_init(&g->zp, o->patterns, o->zipf) != 0 ||
        zipf_init(&g->za, o->agents, o->zipf) != 0 ||
        names_init(&g->pat, o->patterns, pattern_name) != 0 ||
        names_init(&g->agent, o->agents, agent_name) != 0) {
        return -1;
    }
    g->truth.patterns = calloc(o->patterns, sizeof(usage_t));
    g->seen = calloc(o->patterns, sizeof(uint64_t));
    if (g->truth.patterns == NULL || g->seen == NULL) {
        return -1;
    }
    table_alloc(&g->truth.pairs, 1024);
    table_alloc(&g->truth.hours, 1024);
    table_alloc(&g->truth.cooc, 1024);
    g->span_us = (int64_t)(o->span_hours * 3600e6);
    if (g->span_us < 1) {
        g->span_us = 1;
    }
    g->start_us = o->have_start ? o->time_start_s * 1000000 : wall_us() - g->span_us;
    if (g->start_us < 0) {
        g->start_us = 0;
    }
    g->allow_large = strcmp(o->compression, "none") != 0;
    for (int b = 1; b < N_BAD; b++) {
        g->bad_total += (b == BAD_TOO_LARGE && !g->allow_large) ? 0 : bad_weight[b];
    }
    if (g->allow_large && o->bad_ratio > 0) {
        g->large_blob = malloc(LARGE_EVENT_BYTES);
        if (g->large_blob == NULL) {
            return -1;
        }
        for (size_t i = 0; i < LARGE_EVENT_BYTES; i++) {
            g->large_blob[i] = "abcdefghijklmnop"[i % 16];
        }
    }
    return 0;
}

static void gen_free(gen_t *g)
{
    free(g->zp.cdf);
    free(g->za.cdf);
    names_free(&g->pat);
    names_free(&g->agent);
    free(g->truth.patterns);
    free(g->truth.pairs.cells);
    free(g->truth.hours.cells);
    free(g->truth.cooc.cells);
    free(g->seen);
    free(g->buf.p);
    free(g->large_blob);
    copyq_free(&g->copies);
}

int main(int argc, char **argv)
{
    opts_t o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }
    int exit_code = 1;
    gen_t g;
    event_t ev;
    memset(&ev, 0, sizeof ev);
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt[N_TOPICS] = {NULL};
    dr_state_t dr = {0, 0};
    uint64_t produced = 0, bad = 0, copies = 0, copies_with_id = 0;
    bool produce_failed = false;

    if (gen_init(&g, &o) != 0) {
        fprintf(stderr, "pt-loadgen: out of memory\n");
        goto done;
    }
    ev.refs = calloc(o.refs_max + 4, sizeof(ref_t));
    ev.distinct = calloc(o.refs_max + 4, sizeof(uint32_t));
    if (ev.refs == NULL || ev.distinct == NULL) {
        fprintf(stderr, "pt-loadgen: out of memory\n");
        goto done;
    }
    if (!o.quiet) {
        int64_t now = wall_us();
        if (g.start_us + g.span_us > now + 3600 * INT64_C(1000000)) {
            fprintf(stderr, "pt-loadgen: note: event times reach more than 1 h into the future; "
                            "the broker may refuse such Kafka timestamps\n");
        }
        if (g.start_us < now - 6 * 24 * 3600 * INT64_C(1000000)) {
            fprintf(stderr, "pt-loadgen: note: event times older than 6 days are also Kafka "
                            "timestamps; retention may delete them before they are consumed\n");
        }
        if (!g.allow_large && o.bad_ratio > 0) {
            fprintf(stderr, "pt-loadgen: note: --compression none: no 1.5 MB \"too large\" "
                            "events\n");
        }
    }

    rk = producer_new(&o, &dr);
    if (rk == NULL) {
        goto done;
    }
    for (int t = 0; t < N_TOPICS; t++) {
        char name[512];
        snprintf(name, sizeof name, "%s%s", o.prefix, topic_base[t]);
        rkt[t] = rd_kafka_topic_new(rk, name, NULL);
        if (rkt[t] == NULL) {
            fprintf(stderr, "pt-loadgen: topic %s: %s\n", name,
                    rd_kafka_err2str(rd_kafka_last_error()));
            goto done;
        }
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    double t0 = mono_s(), next_report = t0 + 5;
    while (!stop_requested) {
        /* A copy goes out once the originals it waits for have, and every copy before the end:
         * always after its original, which was queued first. */
        copy_t c;
        bool is_copy = g.copies.n > 0 && (g.copies.v[0].due <= produced || produced == o.events);
        if (!is_copy && produced == o.events) {
            break;
        }
        rd_kafka_resp_err_t err;
        if (is_copy) {
            copyq_pop(&g.copies, &c);
            err = produce(rk, rkt[c.topic], c.value, c.len, c.key, c.key_len, c.kafka_ts_ms);
        } else {
            gen_event(&g, &ev);
            err =
                produce(rk, rkt[ev.topic], g.buf.p, g.buf.len, ev.key, ev.key_len, ev.kafka_ts_ms);
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "pt-loadgen: produce failed: %s\n", rd_kafka_err2str(err));
            produce_failed = true;
            if (is_copy) {
                copy_free(&c);
            }
            break;
        }
        if (is_copy) {
            truth_copy(&g, &c);
            copies++;
            copies_with_id += c.has_id;
            copy_free(&c);
        } else {
            truth_apply(&g, &ev);
            produced++;
            bad += ev.bad != BAD_NONE;
            if (ev.copy) {
                copy_plan(&g, &ev, produced);
            }
        }
        uint64_t sent = produced + copies;
        if (((sent - 1) & 1023) == 0) {
            rd_kafka_poll(rk, 0);
            double now = mono_s();
            if (!o.quiet && now >= next_report) {
                fprintf(stderr, "pt-loadgen: %" PRIu64 " events, %.0f events/s\n", sent,
                        (double)sent / (now - t0));
                next_report = now + 5;
            }
        }
        if (o.rate > 0) {
            wait_until(rk, t0 + (double)sent / o.rate);
        }
    }

    /* Everything queued must be delivered (or have failed) before the truth is final. */
    for (int waited = 0; rd_kafka_outq_len(rk) > 0 && waited < 300; waited++) {
        rd_kafka_flush(rk, 1000);
    }
    double secs = mono_s() - t0;
    int left = rd_kafka_outq_len(rk);
    char copied[96] = "";
    if (o.dup_ratio > 0) {
        snprintf(copied, sizeof copied, " and %" PRIu64 " copies (%" PRIu64 " with an ID)", copies,
                 copies_with_id);
    }
    uint64_t sent = produced + copies;
    fprintf(stderr,
            "pt-loadgen: %" PRIu64 " events produced (%" PRIu64 " bad)%s in %.2f s, %.0f events/s; "
            "%" PRIu64 " delivered, %" PRIu64 " failed, %d undelivered\n",
            produced, bad, copied, secs, secs > 0 ? (double)sent / secs : 0.0, dr.delivered,
            dr.failed, left);
    if (!o.quiet) {
        size_t used = 0;
        for (size_t p = 0; p < g.pat.n; p++) {
            used += g.truth.patterns[p].count > 0;
        }
        fprintf(stderr,
                "pt-loadgen: truth: %" PRIu64 " uses, %zu patterns, %zu pairs, "
                "%zu pattern-hours\n",
                g.truth.uses, used, g.truth.pairs.n, g.truth.hours.n);
    }
    if (o.truth != NULL && truth_write(&g, o.truth) != 0) {
        goto done;
    }
    if (produce_failed || dr.failed > 0 || left > 0) {
        fprintf(stderr, "pt-loadgen: not every event was delivered; the truth does not "
                        "describe the topics\n");
        goto done;
    }
    if (stop_requested) {
        fprintf(stderr,
                "pt-loadgen: interrupted after %" PRIu64 " of %" PRIu64 " events (the "
                "truth describes those)\n",
                produced, o.events);
        goto done;
    }
    exit_code = 0;
done:
    for (int t = 0; t < N_TOPICS; t++) {
        if (rkt[t] != NULL) {
            rd_kafka_topic_destroy(rkt[t]);
        }
    }
    if (rk != NULL) {
        rd_kafka_destroy(rk);
    }
    free(ev.refs);
    free(ev.distinct);
    gen_free(&g);
    return exit_code;
}
