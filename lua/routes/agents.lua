-- Agents: who uses patterns, how much, and which kinds (answers in lua/lib/pt/agents.lua).
local agents = require("pt.agents")

local TIME = { type = "string", format = "date-time" }

local AGENT = { type = "object", properties = { agent_name = { type = "string" },
    usage_count = { type = "integer" }, distinct_patterns = { type = "integer" },
    first_used_at = TIME, last_used_at = TIME } }

return {
    {
        method = "GET", path = "/api/agents", tags = { "agents" },
        csv = "agents", -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Agents with their totals, most active first",
        description = "usage_count counts pattern uses (an event referencing k patterns " ..
            "counts k); events without an agent count under \"unknown\".",
        query = {
            { name = "limit", type = "integer", minimum = 1, maximum = 1000, default = 100 },
            { name = "offset", type = "integer", minimum = 0, maximum = 1000000, default = 0 },
        },
        responses = { ["200"] = { description = "A page of agents", schema = { type = "object",
            properties = { total = { type = "integer" }, limit = { type = "integer" },
                offset = { type = "integer" },
                agents = { type = "array", items = AGENT } } } } },
        handler = agents.list,
    },
    {
        method = "GET", path = "/api/agents/{agent_name}/profile", tags = { "agents" },
        -- the rows as CSV too (?format=csv, Accept: text/csv), a column list naming each
        csv = { "by_pattern_type", "top_patterns" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "One agent's usage per pattern_type, with last use, and its top patterns",
        description = "by_pattern_type: usage_count, patterns (distinct), percentage of the " ..
            "agent's usage (2 decimals), first and last use, most used first; a pattern with no " ..
            "type in the catalog counts as \"unknown\". 404 for an agent that used nothing.",
        query = { { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 10,
            description = "How many top patterns." } },
        responses = {
            ["200"] = { description = "Profile", schema = { type = "object", properties = {
                agent_name = { type = "string" }, usage_count = { type = "integer" },
                distinct_patterns = { type = "integer" }, first_used_at = TIME,
                last_used_at = TIME,
                by_pattern_type = { type = "array", items = { type = "object", properties = {
                    pattern_type = { type = "string" }, usage_count = { type = "integer" },
                    patterns = { type = "integer" }, percentage = { type = "number" },
                    first_used_at = TIME, last_used_at = TIME } } },
                top_patterns = { type = "array", items = { type = "object", properties = {
                    pattern_id = { type = "string" }, pattern_name = { type = "string" },
                    pattern_type = { type = "string" }, status = { type = "string" },
                    usage_count = { type = "integer" }, first_used_at = TIME,
                    last_used_at = TIME } } } } } },
            ["404"] = { description = "Unknown agent",
                schema = { type = "object", properties = { detail = { type = "string" } } } },
        },
        handler = agents.profile,
    },
}
