/* config_options: every option of the engine in one table (name, type, default, environment
 * variable, whether a reload may change it, range, meaning), which config.c loads and checks
 * and from which --help and the README's option table are printed. Private to config. */
#ifndef PT_CONFIG_OPTIONS_H
#define PT_CONFIG_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef enum { T_STRING, T_INT, T_BOOL, T_TOPICS, T_PROPS, T_DAYS, T_DEDUPE } opt_type_t;

typedef struct {
    const char *key;
    opt_type_t type;
    const char *def;
    size_t offset;
    const char *env;
    bool reload; /* may change on reload without a reconnect */
    int64_t min, max;
    const char *help;
} option_t;

#define OFF(f) offsetof(config_t, f)

extern const option_t config_options[];
extern const size_t config_n_options;
/* The option named key, or NULL. */
const option_t *config_find_option(const char *key);

#endif
