-- The seed's usage API (/api/patterns/usage/...): same paths, parameters, ranges, defaults and
-- fields as the service it replaces, plus /unknown for IDs nobody registered. The answers are
-- computed in lua/lib/pt/usage.lua.
local usage = require("pt.usage")
local WINDOW = usage.WINDOW

local STATS_SCHEMA = {
    type = "object",
    required = pt.array({ "pattern_id", "usage_count", "used_by_agents", "agent_count", "trend",
        "trend_percentage" }),
    properties = {
        pattern_id = { type = "string" }, pattern_name = { type = "string" },
        pattern_type = { type = "string" }, usage_count = { type = "integer" },
        last_used_at = { type = "string", format = "date-time", nullable = true },
        first_used_at = { type = "string", format = "date-time", nullable = true },
        used_by_agents = { type = "array", items = { type = "string" } },
        agent_count = { type = "integer" },
        trend = { type = "string",
            enum = pt.array({ "increasing", "decreasing", "stable", "insufficient_data" }) },
        trend_percentage = { type = "number" },
        days_since_last_use = { type = "integer", nullable = true },
        registered = { type = "boolean" },
    },
}
local LIST_SCHEMA = { type = "array", items = STATS_SCHEMA }
local NOT_FOUND = { description = "Unknown pattern",
    schema = { type = "object", properties = { detail = { type = "string" } } } }

return {
    {
        method = "GET", path = "/api/patterns/usage/summary", tags = { "usage" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Overall usage summary",
        responses = { ["200"] = { description = "Summary", schema = { type = "object",
            properties = { total_patterns = { type = "integer" },
                used_patterns = { type = "integer" }, unused_patterns = { type = "integer" },
                total_usage = { type = "integer" },
                avg_usage_per_pattern = { type = "number" }, usage_rate = { type = "number" },
                total_agents = { type = "integer" } } } } },
        description = "Recomputed when this engine has committed new data since, at most " ..
            "once a second otherwise.",
        handler = usage.summary,
    },
    {
        method = "GET", path = "/api/patterns/usage/top", tags = { "usage" },
        csv = true, -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Most used patterns (all time, or in the last `days` days)",
        description = "With days, patterns are ranked by their usage in the last days days " ..
            "(hourly and daily buckets; usage_in_window), otherwise by usage_count.",
        query = {
            { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20 },
            { name = "pattern_type", type = "string", max_length = 100 },
            { name = "days", type = "integer", minimum = 1, maximum = 365 },
        },
        responses = { ["200"] = { description = "Patterns by usage, most used first",
            schema = LIST_SCHEMA } },
        handler = usage.top,
    },
    {
        method = "GET", path = "/api/patterns/usage/unused", tags = { "usage" },
        csv = true, -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Registered patterns never used, older than min_age_days",
        query = { { name = "min_age_days", type = "integer", minimum = 1, maximum = 365,
            default = 30 } },
        responses = { ["200"] = { description = "Unused patterns, oldest first",
            schema = LIST_SCHEMA } },
        handler = usage.unused,
    },
    {
        method = "GET", path = "/api/patterns/usage/stale", tags = { "usage" },
        csv = true, -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Patterns used before but not in the last days_inactive days",
        query = { { name = "days_inactive", type = "integer", minimum = 1, maximum = 365,
            default = 90 } },
        responses = { ["200"] = { description = "Stale patterns, longest inactive first",
            schema = LIST_SCHEMA } },
        handler = usage.stale,
    },
    {
        method = "GET", path = "/api/patterns/usage/unknown", tags = { "usage" },
        csv = true, -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Pattern IDs seen in events but never registered in the catalog",
        query = { { name = "limit", type = "integer", minimum = 1, maximum = 1000,
            default = 100 } },
        responses = { ["200"] = { description = "Unregistered pattern IDs, most used first",
            schema = { type = "array", items = { type = "object", properties = {
                pattern_id = { type = "string" }, count = { type = "integer" },
                first_seen = { type = "string", format = "date-time", nullable = true },
                last_seen = { type = "string", format = "date-time", nullable = true } } } } } },
        handler = usage.unknown,
    },
    {
        method = "GET", path = "/api/patterns/usage/by-agent/{agent_name}", tags = { "usage" },
        csv = true, -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Patterns used by one agent, most used by it first",
        query = { { name = "limit", type = "integer", minimum = 1, maximum = 200, default = 50 } },
        responses = { ["200"] = { description = "Patterns with the agent's own counts",
            schema = LIST_SCHEMA } },
        handler = usage.by_agent,
    },
    {
        method = "GET", path = "/api/patterns/usage/{pattern_id}", tags = { "usage" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Usage statistics of one pattern",
        description = "trend compares the last window_days days with the window_days before, " ..
            "both ending at the end of the current UTC hour (the same rule as /trends).",
        query = {
            { name = "include_trend", type = "boolean", default = true },
            { name = "window_days", type = "integer", minimum = 1, maximum = 90, default = WINDOW,
              description = "Length of each trend window in days." },
        },
        responses = { ["200"] = { description = "PatternUsageStats", schema = STATS_SCHEMA },
            ["404"] = NOT_FOUND },
        handler = usage.pattern,
    },
}
