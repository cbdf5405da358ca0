/* config: every option of the engine, in one table (key, type, default, environment override,
 * whether a reload may change it, help: config_options.c, which also prints --help and the
 * README's table). Loads the Lua config file in the sandbox, applies environment overrides and
 * validates. Owns the config_t it builds; does not own the rules or
 * routes the paths point at. */
#ifndef PT_CONFIG_H
#define PT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_TOPICS 64
#define CONFIG_MAX_PROPS 64

typedef struct {
    char *topic;
    char *rule; /* path of the rule file, relative to root unless absolute */
} config_topic_t;

typedef struct {
    char *key;
    char *value;
} config_prop_t;

/* Event-ID deduplication of one topic: a copy of an event counted within window_s is not
 * counted again. */
typedef struct {
    char *topic;
    int64_t window_s;
} config_dedupe_t;

typedef struct config {
    char *root;
    char *config_path;
    char *database_url;
    char *kafka_bootstrap_servers;
    bool kafka_enable_consumer;
    char *kafka_group_id;
    char *kafka_start_offset;
    char *http_bind;
    int64_t http_port;
    int64_t http_max_body_bytes;
    int64_t http_timeout_s;
    int64_t http_request_timeout_s;
    int64_t http_max_header_bytes;
    int64_t http_max_connections;
    char *http_token; /* after config_load: the token in force, from the option or the file */
    char *http_token_file;
    bool http_token_reads;
    int64_t route_instruction_budget;
    int64_t query_timeout_ms;
    int64_t batch_max_events;
    int64_t batch_max_patterns;
    int64_t batch_timeout_ms;
    int64_t max_buffer_mb;
    int64_t max_event_bytes;
    int64_t dead_letter_payload_max;
    int64_t dead_letter_retention_days; /* 0: keep */
    int64_t rule_instruction_budget;
    int64_t lua_memory_mb;
    int64_t flush_retry_max_ms;
    int64_t flush_timeout_ms;
    int64_t shutdown_timeout_ms;
    int64_t pg_pool_size;
    int64_t pg_prepared_statements;
    int64_t cooccurrence_max_patterns;
    int64_t fold_interval_ms;
    int64_t retention_hourly_days;
    char *log_level;
    char *log_format; /* "text" or "json" */
    size_t n_topics;
    config_topic_t topics[CONFIG_MAX_TOPICS];
    size_t n_props;
    config_prop_t kafka_properties[CONFIG_MAX_PROPS];
    int64_t lifetime_default_days;
    size_t n_lifetimes;
    config_prop_t lifetimes[CONFIG_MAX_PROPS]; /* pattern_type -> days (value as text) */
    size_t n_dedupe;
    config_dedupe_t dedupe[CONFIG_MAX_TOPICS]; /* sorted by topic */
} config_t;

/* Builds a configuration: defaults, then the file at `path` (NULL = the default file if it
 * exists), then the environment. NULL with a message in err on any error: a missing explicit
 * file, a syntax error, an unknown key, a value of the wrong type or out of range. */
config_t *config_load(const char *path, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void config_free(config_t *c);
/* Names, comma-separated in buf, of the options that differ between two configurations and
 * cannot change without a restart; returns how many. */
size_t config_restart_keys(const config_t *running, const config_t *next, char *buf, size_t len);
/* Copies every option that may change while running from next into running. */
void config_apply_live(config_t *running, const config_t *next);
/* The dedupe window of a topic in seconds; 0 when the topic is not deduplicated. */
int64_t config_dedupe_window(const config_t *c, const char *topic);
/* Resolves a path relative to the config's root into buf. */
const char *config_path(const config_t *c, const char *rel, char *buf, size_t buflen);
/* Prints every option with its type, default, environment variable and help text. */
void config_print_help(FILE *out);
/* Prints the options as a Markdown table (the README's option list comes from this). */
void config_print_markdown(FILE *out);

#endif
