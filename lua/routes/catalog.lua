-- The pattern catalog's write routes (answers in lua/lib/pt/catalog.lua).
local catalog = require("pt.catalog")

local PATTERN_SCHEMA = { type = "object", properties = {
    pattern_id = { type = "string", minLength = 1, maxLength = 255 },
    pattern_name = { type = "string" }, pattern_type = { type = "string", maxLength = 100 },
    created_at = { type = "string", format = "date-time" },
    status = { type = "string", enum = pt.array({ "active", "deprecated", "retired" }),
        description = "Lifecycle status; a new pattern is active, an existing one keeps its " ..
            "own." } } }

return {
    {
        method = "PUT", path = "/api/patterns/{pattern_id}", tags = { "catalog" },
        summary = "Register or update one pattern in the catalog",
        body = { ["application/json"] = { schema = PATTERN_SCHEMA } },
        responses = { ["200"] = "Registered", ["400"] = "Invalid body" },
        handler = catalog.put_one,
    },
    {
        method = "POST", path = "/api/patterns", tags = { "catalog" },
        summary = "Register many patterns (a JSON array, or NDJSON)",
        body = { ["application/json"] = { schema = { type = "array", items = PATTERN_SCHEMA } },
                 ["application/x-ndjson"] = { schema = { type = "string" } } },
        responses = { ["200"] = "Registered", ["400"] = "Invalid body" },
        handler = catalog.post_many,
    },
}
