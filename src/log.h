/* log: leveled, timestamped lines on stderr. Owns the current level; does not own any other
 * output (metrics and dead letters are elsewhere). */
#ifndef PT_LOG_H
#define PT_LOG_H

#include <stdbool.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level_t;

void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Parses "debug", "info", "warn" or "error"; false on anything else. */
bool log_parse_level(const char *name, log_level_t *out) __attribute__((warn_unused_result));
void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

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
