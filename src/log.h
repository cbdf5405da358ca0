/* log: leveled, timestamped lines on stderr, as text (the default) or as one JSON object a line
 * (log_format = "json"). Owns the current level and format; does not own any other output
 * (metrics and dead letters are elsewhere). Callable from any thread: each line is one write. */
#ifndef PT_LOG_H
#define PT_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;
typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON } log_format_t;

/* One structured field of a line. Build them with the LF_* macros, which check the value's
 * type; the key is a constant JSON-safe name other than "time", "level" and "msg". */
typedef enum { LOG_F_STR, LOG_F_INT, LOG_F_UINT, LOG_F_DBL } log_ftype_t;
typedef struct {
    const char *key;
    log_ftype_t type;
    union {
        const char *s; /* NULL: the field is left out */
        long long i;
        unsigned long long u;
        double d; /* written with 3 decimals; not finite: null in JSON */
    };
} log_field_t;

#define LF_STR(k, v) ((log_field_t){.key = (k), .type = LOG_F_STR, .s = (v)})
#define LF_INT(k, v) ((log_field_t){.key = (k), .type = LOG_F_INT, .i = (v)})
#define LF_UINT(k, v) ((log_field_t){.key = (k), .type = LOG_F_UINT, .u = (v)})
#define LF_DBL(k, v) ((log_field_t){.key = (k), .type = LOG_F_DBL, .d = (v)})
/* The fields argument pair of log_fields: LOG_F(LF_STR("topic", t), LF_INT("offset", o)). */
#define LOG_F(...)                                                                                 \
    (const log_field_t[]){__VA_ARGS__},                                                            \
        (sizeof((const log_field_t[]){__VA_ARGS__}) / sizeof(log_field_t))

void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Parses "debug", "info", "warn" or "error"; false on anything else. */
bool log_parse_level(const char *name, log_level_t *out) __attribute__((warn_unused_result));
void log_set_format(log_format_t format);
log_format_t log_get_format(void);
/* Parses "text" or "json"; false on anything else. */
bool log_parse_format(const char *name, log_format_t *out) __attribute__((warn_unused_result));

/* One line: text "TIME LEVEL message", or JSON {"time":..,"level":..,"msg":..}. JSON strings are
 * escaped and invalid UTF-8 becomes U+FFFD, so every line is valid JSON whatever the bytes. */
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* log_msg with fields: in text appended as " key=value" (quoted when the value has spaces,
 * quotes, '=' or control characters), in JSON members of the object (numbers as numbers). */
void log_fields(log_level_t level, const log_field_t *fields, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() <= LOG_DEBUG) {                                                        \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
        }                                                                                          \
    } while (0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
