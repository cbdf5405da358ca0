-- Ingest over HTTP: events through a topic's rule into the same batches as Kafka's. The answer
-- comes once the flush that holds them has committed, so a 200 means the counts are durable.
-- Not idempotent: a client that retries after a timeout may count its events twice.
return {
    {
        method = "POST", path = "/api/patterns/usage/events", tags = { "ingest" },
        summary = "Ingest events (a JSON object, a JSON array, or NDJSON) through a topic's rule",
        description = "Send NDJSON with Content-Type application/x-ndjson. Events that cannot " ..
            "be counted are dead-lettered, as they would be from Kafka, and reported in the " ..
            "answer.",
        query = { { name = "topic", type = "string", required = true, max_length = 249,
            description = "A configured topic; its rule extracts the patterns.",
            openapi_enum = pt.topics } },
        body = {
            ["application/json"] = { schema = { oneOf = pt.array({ { type = "object" },
                { type = "array", items = { type = "object" } } }) } },
            ["application/x-ndjson"] = { schema = { type = "string" } },
        },
        responses = {
            ["200"] = { description = "Stored", schema = { type = "object", properties = {
                topic = { type = "string" }, accepted = { type = "integer" },
                dead_lettered = { type = "integer" }, patterns_counted = { type = "integer" } } } },
            ["400"] = "Body is not JSON",
            ["503"] = "Not stored (database unavailable or shutting down); send again",
        },
        handler = function(req)
            local ctype = (req.headers["content-type"] or ""):lower()
            local format = "json"
            if ctype:find("ndjson", 1, true) or ctype:find("jsonl", 1, true) or
                ctype:find("json-seq", 1, true) then
                format = "ndjson"
            else
                local v = pt.decode_json(req.body)
                if type(v) ~= "table" then
                    pt.fail(400, "the body must be a JSON object, a JSON array of objects, " ..
                        "or NDJSON (Content-Type: application/x-ndjson)")
                end
            end
            local result, err = pt.ingest(req.args.topic, req.body, format)
            if not result then
                pt.fail(422, pt.array({ { loc = pt.array({ "query", "topic" }), msg = err,
                    type = "value_error.topic" } }))
            end
            return result
        end,
    },
}
