-- patterntrack configuration: a Lua file that returns a table of options. Every key is
-- optional (`patterntrack --help` lists all of them with their defaults); unknown keys are
-- errors. Environment variables DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, KAFKA_ENABLE_CONSUMER,
-- KAFKA_GROUP_ID and HTTP_PORT override what is set here.
return {
    -- Each topic and the rule that extracts its patterns. Prefixed names work too, e.g.
    -- ["prod.agent-actions"] = "rules/agent-actions.lua".
    topics = {
        ["agent-manifest-injections"] = "rules/agent-manifest-injections.lua",
        ["agent-actions"] = "rules/agent-actions.lua",
        ["agent-routing-decisions"] = "rules/agent-routing-decisions.lua",
    },
    -- Flush when a batch holds this many events or distinct patterns, or is this old.
    -- The seed's "50 patterns or 5 s" is batch_max_patterns = 50, batch_timeout_ms = 5000.
    batch_max_events = 50000,
    batch_max_patterns = 20000,
    batch_timeout_ms = 500,
    http_port = 8053,
    log_level = "info",
}
