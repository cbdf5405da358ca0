-- Dead letters over HTTP (answers in lua/lib/pt/dead_letters.lua). Both routes need the bearer
-- token whenever one is set, even when reads are open: payloads may carry user text.
local dl = require("pt.dead_letters")

local TIME = { type = "string", format = "date-time" }
local GUARD = "Needs the bearer token whenever http_token is set (payloads may hold user text)."

local ITEM = { type = "object", properties = {
    id = { type = "integer" }, topic = { type = "string" }, partition = { type = "integer" },
    offset = { type = "integer" }, reason = { type = "string" },
    detail = { type = "string", nullable = true }, payload_size = { type = "integer" },
    payload_truncated_at_ingest = { type = "boolean",
        description = "The stored payload was cut at dead_letter_payload_max." },
    created_at = TIME,
    payload_hash = { type = "string", nullable = true, description = "XXH3-128 of the whole " ..
        "payload (null for rows from before it was kept): tells a payload found again from " ..
        "another, whether or not the payload is kept (dead_letter_payload_max = 0 keeps none)." },
    payload = { type = "string", nullable = true,
        description = "At most payload_max bytes of the stored payload; null when none is kept." },
    payload_encoding = { type = "string", enum = pt.array({ "utf-8", "base64" }),
        nullable = true, description = "utf-8 when the bytes shown are UTF-8 text (cut on a " ..
            "character boundary), else base64 of them." },
    payload_shown_bytes = { type = "integer" } } }

return {
    {
        method = "GET", path = "/api/dead-letters", tags = { "dead letters" },
        csv = "dead_letters", -- the rows as CSV too (?format=csv, Accept: text/csv)
        summary = "Dead letters, newest first",
        description = GUARD,
        query = {
            { name = "topic", type = "string", max_length = 249 },
            { name = "reason", type = "string", max_length = 200 },
            { name = "limit", type = "integer", minimum = 1, maximum = 1000, default = 100 },
            { name = "offset", type = "integer", minimum = 0, maximum = 10000000, default = 0 },
            { name = "payload_max", type = "integer", minimum = 0, maximum = 65536,
              default = 1024, description = "Bytes of each payload shown." },
        },
        responses = { ["200"] = { description = "A page of dead letters", schema = {
            type = "object", properties = { total = { type = "integer" },
                limit = { type = "integer" }, offset = { type = "integer" },
                dead_letters = { type = "array", items = ITEM } } } },
            ["401"] = "No or a wrong bearer token" },
        handler = dl.list,
    },
    {
        method = "GET", path = "/api/dead-letters/summary", tags = { "dead letters" },
        csv = "by_topic_reason", -- the rows as CSV too (?format=csv, Accept: text/csv)
        summary = "Dead letters per topic and reason: how many, the first and the last",
        description = GUARD,
        responses = { ["200"] = { description = "Counts per topic and reason", schema = {
            type = "object", properties = { total = { type = "integer" },
                by_topic_reason = { type = "array", items = { type = "object", properties = {
                    topic = { type = "string" }, reason = { type = "string" },
                    count = { type = "integer" }, first_at = TIME, last_at = TIME,
                    truncated = { type = "integer" } } } } } } },
            ["401"] = "No or a wrong bearer token" },
        handler = dl.summary,
    },
}
