-- History analytics over the usage buckets: trends, time series, heatmaps, co-occurrence and
-- lifecycle health. Every count comes from tables the flush keeps exact in the same transaction
-- as the usage counts: pattern_usage_hourly (+ pattern_usage_daily, where hours older than
-- retention_hourly_days are rolled up), the partner lists (pattern_lists, agent_lists) and
-- pattern_lineage_nodes. Agents have their own file (agents.lua).
local trends = require("pt.trends")
local series = require("pt.series")
local cooccurrence = require("pt.cooccurrence")
local lifecycle = require("pt.lifecycle")
local H = require("pt.history")

local NOT_FOUND = { description = "Unknown pattern",
    schema = { type = "object", properties = { detail = { type = "string" } } } }
local TIME = { type = "string", format = "date-time" }
local TIME_OR_NULL = { type = "string", format = "date-time", nullable = true }
local TREND = { type = "string",
    enum = pt.array({ "increasing", "decreasing", "stable", "insufficient_data" }) }

local function obj(props)
    return { type = "object", properties = props }
end

local function list(item)
    return { type = "array", items = item }
end

local TREND_ITEM = obj({ pattern_id = { type = "string" }, pattern_name = { type = "string" },
    pattern_type = { type = "string" }, recent_usage = { type = "integer" },
    previous_usage = { type = "integer" }, trend = TREND, trend_percentage = { type = "number" } })

local HEATMAP_SCHEMA = obj({ pattern_id = { type = "string" }, tz = { type = "string" },
    days = { type = "integer" }, from = TIME, to = TIME,
    day_names = list({ type = "string" }),
    matrix = { type = "array",
        description = "7 rows (Sunday first, as day_names) of 24 hours (0-23) in tz",
        items = list({ type = "integer" }) },
    total = { type = "integer" }, max = { type = "integer" },
    daily_usage_not_shown = { type = "integer" }, resolution_note = { type = "string" } })
local HEATMAP_QUERY = {
    { name = "days", type = "integer", minimum = 1, maximum = 365, default = 30,
      description = "Days up to the end of the current UTC hour." },
    H.TZ_PARAM,
}
local HEATMAP_DESC = "Usage per weekday and hour of day, from the hourly buckets only: days " ..
    "older than retention_hourly_days are held per day and cannot be placed in hours (their " ..
    "usage is reported in daily_usage_not_shown)."
local MEASURES_DESC = "lift = count * events_with_patterns / (usage_count(a) * usage_count(b)) " ..
    "(1 = together as often as chance); jaccard = count / (usage_count(a) + usage_count(b) - " ..
    "count); both rounded to 6 decimals. Pairs are recorded for events with at most " ..
    "cooccurrence_max_patterns distinct patterns; events above it are counted in " ..
    "events_over_cooccurrence_limit (their uses still count)."

-- ---------------------------------------------------------------- routes

local PAIR = obj({ pattern_id_1 = { type = "string" }, pattern_name_1 = { type = "string" },
    usage_count_1 = { type = "integer" }, pattern_id_2 = { type = "string" },
    pattern_name_2 = { type = "string" }, usage_count_2 = { type = "integer" },
    count = { type = "integer" }, lift = { type = "number", nullable = true },
    jaccard = { type = "number", nullable = true }, last_seen_together = TIME })
local PARTNER = obj({ pattern_id = { type = "string" }, pattern_name = { type = "string" },
    pattern_type = { type = "string" }, usage_count = { type = "integer" },
    count = { type = "integer" }, lift = { type = "number", nullable = true },
    jaccard = { type = "number", nullable = true }, last_seen_together = TIME })
local LIFECYCLE_ITEM = obj({ pattern_id = { type = "string" }, pattern_name = { type = "string" },
    pattern_type = { type = "string" },
    status = { type = "string", enum = pt.array({ "active", "deprecated", "retired" }) },
    usage_count = { type = "integer" }, last_used_at = TIME_OR_NULL,
    days_since_last_use = { type = "integer" }, created_at = TIME, age_days = { type = "integer" },
    lifetime_days = { type = "integer" }, agent_count = { type = "integer" },
    agents = list(obj({ agent_name = { type = "string" }, usage_count = { type = "integer" },
        last_used_at = TIME })) })

return {
    {
        method = "GET", path = "/api/patterns/usage/trends", tags = { "history" },
        csv = "patterns", -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Fastest rising or falling patterns, and the overall trend",
        description = "Usage in the last window_days days against the window_days before, both " ..
            "ending at the end of the current UTC hour, with the rule of " ..
            "/api/patterns/usage/{pattern_id}: above +10 % increasing, below -10 % decreasing " ..
            "(trend_percentage as an absolute value), insufficient_data (never listed) when the " ..
            "earlier window has no usage. Ordered by trend_percentage, then by the absolute " ..
            "change, then pattern_id. Days older than retention_hourly_days are held as daily " ..
            "buckets and count in the window holding their start (resolution_note then says so).",
        query = {
            { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20 },
            { name = "direction", type = "string", enum = { "increasing", "decreasing" },
              default = "increasing" },
            { name = "window_days", type = "integer", minimum = 1, maximum = 90, default = 7 },
        },
        responses = { ["200"] = { description = "Trends", schema = obj({
            window_days = { type = "integer" }, direction = { type = "string" },
            window_end = TIME, recent_window_start = TIME, previous_window_start = TIME,
            overall = obj({ recent_usage = { type = "integer" },
                previous_usage = { type = "integer" },
                trend = TREND, trend_percentage = { type = "number" } }),
            patterns = list(TREND_ITEM), resolution_note = { type = "string" } }) } },
        handler = trends.answer,
    },
    {
        method = "GET", path = "/api/patterns/usage/{pattern_id}/timeseries", tags = { "history" },
        csv = { "points", "rolled_up" }, -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Usage of one pattern per hour or per UTC day, zero-filled",
        description = "Buckets whose start lies in [from rounded down to the bucket, to); " ..
            "defaults: to = the end of the current bucket, from = to - 7 days (hour) or " ..
            "30 days (day). At most 10000 buckets. Days older than retention_hourly_days are " ..
            "held as daily buckets: bucket=day stays exact; with bucket=hour their hours are " ..
            "null and their usage is listed in rolled_up, with a resolution_note.",
        query = {
            { name = "bucket", type = "string", enum = { "hour", "day" }, default = "hour" },
            { name = "from", type = "string", max_length = 64,
              description = "ISO-8601 time (UTC when it has no offset)." },
            { name = "to", type = "string", max_length = 64,
              description = "ISO-8601 time, exclusive." },
        },
        responses = { ["200"] = { description = "Series", schema = obj({
            pattern_id = { type = "string" }, bucket = { type = "string" }, from = TIME, to = TIME,
            total = { type = "integer" },
            points = list(obj({ start = TIME,
                usage_count = { type = "integer", nullable = true } })),
            rolled_up = list(obj({ day = { type = "string", format = "date" },
                usage_count = { type = "integer" } })),
            resolution_note = { type = "string" } }) }, ["404"] = NOT_FOUND },
        handler = series.timeseries,
    },
    {
        method = "GET", path = "/api/patterns/usage/heatmap", tags = { "history" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Usage of all patterns per weekday x hour of day",
        description = HEATMAP_DESC, query = HEATMAP_QUERY,
        responses = { ["200"] = { description = "Heatmap", schema = HEATMAP_SCHEMA } },
        handler = function(req)
            return series.heatmap(req, nil)
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/{pattern_id}/heatmap", tags = { "history" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Usage of one pattern per weekday x hour of day",
        description = HEATMAP_DESC, query = HEATMAP_QUERY,
        responses = { ["200"] = { description = "Heatmap", schema = HEATMAP_SCHEMA },
            ["404"] = NOT_FOUND },
        handler = function(req)
            return series.heatmap(req, req.params.pattern_id)
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/{pattern_id}/cooccurring", tags = { "history" },
        csv = "cooccurring", -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Patterns used in the same events as this one",
        description = MEASURES_DESC,
        query = {
            { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20 },
            { name = "sort", type = "string", enum = { "count", "lift", "jaccard" },
              default = "count" },
        },
        responses = { ["200"] = { description = "Partners", schema = obj({
            pattern_id = { type = "string" }, usage_count = { type = "integer" },
            events_with_patterns = { type = "integer" },
            events_over_cooccurrence_limit = { type = "integer" },
            cooccurring = list(PARTNER) }) }, ["404"] = NOT_FOUND },
        handler = cooccurrence.cooccurring,
    },
    {
        method = "GET", path = "/api/patterns/usage/cooccurrence/top", tags = { "history" },
        csv = "pairs", -- the rows as CSV too (?format=csv, Accept: text/csv)
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Pairs of patterns most often used in the same event",
        description = MEASURES_DESC,
        query = { { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20 } },
        responses = { ["200"] = { description = "Pairs, most frequent first", schema = obj({
            events_with_patterns = { type = "integer" },
            events_over_cooccurrence_limit = { type = "integer" }, pairs = list(PAIR) }) } },
        handler = cooccurrence.top_pairs,
    },
    {
        method = "GET", path = "/api/patterns/usage/lifecycle", tags = { "history" },
        -- the rows as CSV too (?format=csv, Accept: text/csv), a column list naming each
        csv = { "deprecated_in_use", "potentially_stale", "not_used_recently" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Lifecycle contradictions and staleness",
        description = "deprecated_in_use: deprecated or retired patterns used in the last days " ..
            "days, with the agents that used them then, most recent first (at most " ..
            "agents_limit; agent_count says how many; usage_count per agent is all-time). " ..
            "potentially_stale: active patterns never used whose age exceeds the expected " ..
            "lifetime of their pattern_type (lifetime_days overrides it for every type). " ..
            "not_used_recently: active patterns used before but not in the last days days. " ..
            "Each list holds at most limit items; counts has their full sizes.",
        query = {
            { name = "days", type = "integer", minimum = 1, maximum = 365, default = 30 },
            { name = "lifetime_days", type = "integer", minimum = 1, maximum = 36500,
              description = "Expected lifetime for every pattern_type (default: per type)." },
            { name = "limit", type = "integer", minimum = 1, maximum = 1000, default = 100 },
            { name = "agents_limit", type = "integer", minimum = 1, maximum = 50, default = 10,
              description = "Agents listed per deprecated pattern (agent_count has them all)." },
        },
        responses = { ["200"] = { description = "Lifecycle health", schema = obj({
            days = { type = "integer" },
            lifetime_days = obj({ default = { type = "integer" },
                by_type = { type = "object", additionalProperties = { type = "integer" } } }),
            deprecated_in_use = list(LIFECYCLE_ITEM), potentially_stale = list(LIFECYCLE_ITEM),
            not_used_recently = list(LIFECYCLE_ITEM),
            counts = obj({ deprecated_in_use = { type = "integer" },
                potentially_stale = { type = "integer" },
                not_used_recently = { type = "integer" } }) }) } },
        handler = lifecycle.answer,
    },
}
