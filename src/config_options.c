#include "config_options.h"

#include <stdio.h>
#include <string.h>

const option_t config_options[] = {
    {"database_url", T_STRING, "postgresql://postgres@127.0.0.1:55432/patterntrack",
     OFF(database_url), "DATABASE_URL", false, 0, 0,
     "libpq connection string or URL of the PostgreSQL database that holds the counts."},
    {"kafka_bootstrap_servers", T_STRING, "127.0.0.1:59092", OFF(kafka_bootstrap_servers),
     "KAFKA_BOOTSTRAP_SERVERS", false, 0, 0, "Kafka brokers, host:port[,host:port...]."},
    {"kafka_enable_consumer", T_BOOL, "true", OFF(kafka_enable_consumer), "KAFKA_ENABLE_CONSUMER",
     false, 0, 0, "false = no Kafka at all; the engine still serves HTTP and HTTP ingest."},
    {"kafka_group_id", T_STRING, "pattern-usage-tracking", OFF(kafka_group_id), "KAFKA_GROUP_ID",
     false, 0, 0, "Consumer group; offsets are stored in PostgreSQL per group."},
    {"kafka_start_offset", T_STRING, "earliest", OFF(kafka_start_offset), NULL, false, 0, 0,
     "Where a partition with no stored offset starts: earliest or latest."},
    {"kafka_properties", T_PROPS, NULL, OFF(n_props), NULL, false, 0, 0,
     "Table of extra librdkafka consumer properties, e.g. {[\"security.protocol\"]=\"ssl\"}."},
    {"topics", T_TOPICS, NULL, OFF(n_topics), NULL, true, 0, 0,
     "Table mapping each topic to its rule file (default: the three seed topics to "
     "rules/<topic>.lua). Setting it replaces the whole default map."},
    {"http_bind", T_STRING, "127.0.0.1", OFF(http_bind), NULL, false, 0, 0,
     "Address the HTTP server binds (loopback by default)."},
    {"http_port", T_INT, "8053", OFF(http_port), "HTTP_PORT", false, 0, 65535,
     "HTTP port; 0 disables the HTTP server."},
    {"http_max_body_bytes", T_INT, "10485760", OFF(http_max_body_bytes), NULL, false, 1024,
     1073741824, "Largest request body accepted; larger ones get 413."},
    {"http_timeout_s", T_INT, "30", OFF(http_timeout_s), NULL, false, 1, 3600,
     "A client that sends nothing for this long is disconnected (slow clients cannot hold "
     "connections)."},
    {"http_request_timeout_s", T_INT, "30", OFF(http_request_timeout_s), NULL, false, 1, 3600,
     "A request must arrive whole (headers and body) within this long of its connection opening "
     "or of the previous answer on it, however slowly it trickles in; else the connection is "
     "closed (slowloris)."},
    {"http_max_header_bytes", T_INT, "16384", OFF(http_max_header_bytes), NULL, false, 1024,
     1048576,
     "Largest request line plus headers; a larger request gets 400 and its connection is "
     "closed."},
    {"http_max_connections", T_INT, "1024", OFF(http_max_connections), NULL, false, 1, 1000000,
     "Open HTTP connections at most; one more is answered 503 and closed at once. Lowered at "
     "start to what the open-files limit (ulimit -n) leaves."},
    {"http_token", T_STRING, NULL, OFF(http_token), "PATTERNTRACK_HTTP_TOKEN", true, 0, 0,
     "Bearer token every request but GET and HEAD must carry (Authorization: Bearer TOKEN); "
     "not set = no token. 16 to 4096 characters of A-Z a-z 0-9 - . _ ~ + / =."},
    {"http_token_file", T_STRING, NULL, OFF(http_token_file), NULL, true, 0, 0,
     "File that holds the token instead of http_token (surrounding white space ignored). Read "
     "at start and on every reload; changing the file reloads."},
    {"http_token_reads", T_BOOL, "false", OFF(http_token_reads), NULL, true, 0, 0,
     "true = GET and HEAD need the token too, except /health (probes) and the /dashboard/ "
     "files (the page sends the token it is given in its URL fragment)."},
    {"route_instruction_budget", T_INT, "50000000", OFF(route_instruction_budget), NULL, true, 1000,
     2000000000, "Lua instructions one HTTP route may run between two queries."},
    {"query_timeout_ms", T_INT, "10000", OFF(query_timeout_ms), NULL, false, 100, 600000,
     "Longest an HTTP query may run in PostgreSQL (statement_timeout)."},
    {"batch_max_events", T_INT, "200000", OFF(batch_max_events), NULL, true, 1, 10000000,
     "Flush when the batch holds this many events."},
    {"batch_max_patterns", T_INT, "20000", OFF(batch_max_patterns), NULL, true, 1, 10000000,
     "Flush when the batch holds this many distinct patterns (the seed used 50)."},
    {"batch_timeout_ms", T_INT, "500", OFF(batch_timeout_ms), NULL, true, 1, 3600000,
     "Flush a non-empty batch at the latest this long after its first event (the seed used "
     "5000)."},
    {"max_buffer_mb", T_INT, "32", OFF(max_buffer_mb), NULL, true, 1, 4096,
     "Memory the unflushed batches and their flushes' parameters may hold; above it "
     "consumption waits until a flush commits. Larger batches cost PostgreSQL less per event "
     "(BENCHMARKS.md)."},
    {"max_event_bytes", T_INT, "1048576", OFF(max_event_bytes), NULL, true, 64, 1073741824,
     "Larger messages are dead-lettered without being decoded."},
    {"dead_letter_payload_max", T_INT, "65536", OFF(dead_letter_payload_max), NULL, true, 0,
     16777216,
     "Bytes of a dead letter's payload kept in usage_dead_letters (the rest is cut); "
     "0 keeps none (payloads may carry user text): only its size and hash (payload_hash)."},
    {"dead_letter_retention_days", T_INT, "30", OFF(dead_letter_retention_days), NULL, true, 0,
     36500,
     "Dead letters older than this are deleted (in batches, off the ingest path); 0 keeps "
     "them all."},
    {"rule_instruction_budget", T_INT, "1000000", OFF(rule_instruction_budget), NULL, true, 1000,
     1000000000, "Lua instructions one rule call may run before it is stopped (rule timeout)."},
    {"lua_memory_mb", T_INT, "64", OFF(lua_memory_mb), NULL, true, 1, 4096,
     "Memory cap of each Lua state (rules, routes)."},
    {"flush_retry_max_ms", T_INT, "10000", OFF(flush_retry_max_ms), NULL, true, 10, 600000,
     "Longest backoff between retries of a failed flush."},
    {"flush_timeout_ms", T_INT, "30000", OFF(flush_timeout_ms), NULL, true, 100, 3600000,
     "A flush with no answer after this long is abandoned and retried on a new connection (each "
     "such timeout in a row doubles the next attempt's, up to 8 times this)."},
    {"shutdown_timeout_ms", T_INT, "15000", OFF(shutdown_timeout_ms), NULL, true, 100, 600000,
     "Longest time SIGTERM waits for the last flush before exiting."},
    {"pg_pool_size", T_INT, "4", OFF(pg_pool_size), NULL, false, 1, 64,
     "PostgreSQL connections for HTTP queries (the flush has its own)."},
    {"pg_prepared_statements", T_INT, "256", OFF(pg_prepared_statements), NULL, false, 0, 4096,
     "Distinct HTTP query texts each of those connections prepares once and then only executes "
     "(saves PostgreSQL planning them per request); 0 for a pooler in transaction mode that "
     "cannot keep prepared statements."},
    {"cooccurrence_max_patterns", T_INT, "32", OFF(cooccurrence_max_patterns), NULL, true, 0, 1000,
     "Events with up to this many distinct patterns record every pair of them (co-occurrence); "
     "events with more are counted in usage_topic_stats instead. 0 turns pairs off."},
    {"fold_interval_ms", T_INT, "1000", OFF(fold_interval_ms), NULL, true, 0, 3600000,
     "How often the engine looks for the partner lists flushes left pending (a pattern's agents "
     "and co-occurring patterns, an agent's patterns) to fold into each owner's folded list "
     "(back to back while behind). An owner's rows are folded once it has 8, or their size "
     "reaches half its folded list's, or ingest has been quiet for three intervals. Pending "
     "rows count in every answer. 0 stops folding (tests; patterntrack fold folds by hand)."},
    {"cooccurrence_merge_ms", T_INT, NULL, OFF(fold_interval_ms), NULL, true, 0, 3600000,
     "The name fold_interval_ms had before the (pattern, agent) counts were folded too; still "
     "accepted."},
    {"retention_hourly_days", T_INT, "90", OFF(retention_hourly_days), NULL, true, 1, 36500,
     "Hourly buckets older than this many days roll up into daily buckets (totals unchanged)."},
    {"pattern_lifetime_days", T_DAYS, NULL, OFF(n_lifetimes), NULL, true, 1, 36500,
     "Expected lifetime of a pattern per pattern_type, in days: an active pattern never used "
     "past it is potentially stale (/lifecycle). A table, e.g. { default = 90, ops = 30 }; "
     "default applies to types not listed (90 when not set)."},
    {"dedupe", T_DEDUPE, NULL, OFF(n_dedupe), NULL, true, 1, 2592000,
     "Event-ID deduplication, off unless a topic is listed: { [\"agent-actions\"] = { window_s = "
     "3600 } }. An event of a listed topic whose rule returns an event ID is not counted when a "
     "copy with the same ID was counted in the last window_s seconds (1..2592000); its copies "
     "are counted in usage_topic_stats.duplicates. Kafka input only."},
    {"log_level", T_STRING, "info", OFF(log_level), NULL, true, 0, 0,
     "debug, info, warn or error."},
    {"log_format", T_STRING, "text", OFF(log_format), "PATTERNTRACK_LOG_FORMAT", true, 0, 0,
     "text (one line: time, level, message) or json (one JSON object a line: time, level, msg "
     "and the fields of the event it reports, for log collectors)."},
    {"root", T_STRING, NULL, OFF(root), "PATTERNTRACK_ROOT", false, 0, 0,
     "Directory that relative paths (rules/, lua/, sql/, web/) are resolved against; it must "
     "hold lua/pt/sandbox.lua. In the file, a relative root is relative to the file's "
     "directory. Default: the current directory when it holds lua/pt/sandbox.lua, else the "
     "installed data directory (../share/patterntrack from the executable) when it holds it, "
     "else the source tree the engine was built from."},
};

const size_t config_n_options = sizeof config_options / sizeof config_options[0];

const option_t *config_find_option(const char *key)
{
    for (size_t i = 0; i < config_n_options; i++) {
        if (strcmp(config_options[i].key, key) == 0) {
            return &config_options[i];
        }
    }
    return NULL;
}

static const char *type_name(opt_type_t t)
{
    switch (t) {
    case T_STRING:
        return "string";
    case T_INT:
        return "integer";
    case T_BOOL:
        return "boolean";
    case T_TOPICS:
    case T_PROPS:
    case T_DAYS:
    case T_DEDUPE:
        return "table";
    }
    return "?";
}

void config_print_help(FILE *out)
{
    fprintf(out, "Options (set in the config file, a Lua file that returns a table):\n");
    for (size_t i = 0; i < config_n_options; i++) {
        const option_t *o = &config_options[i];
        fprintf(out, "  %-24s %-8s default: %s%s%s%s\n      %s\n", o->key, type_name(o->type),
                o->def ? o->def : "(see text)", o->env ? "  env: " : "", o->env ? o->env : "", "",
                o->help);
    }
}

void config_print_markdown(FILE *out)
{
    fprintf(out, "| option | type | default | environment | meaning |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    for (size_t i = 0; i < config_n_options; i++) {
        const option_t *o = &config_options[i];
        fprintf(out, "| `%s` | %s | %s%s%s | %s | %s |\n", o->key, type_name(o->type),
                o->def ? "`" : "", o->def ? o->def : "see meaning", o->def ? "`" : "",
                o->env ? o->env : "", o->help);
    }
}
