-- The HTTP router: loads every route file of lua/routes in the sandbox, matches a request to a
-- route (static segments win over {params}), validates its query parameters from the route's
-- own declaration (the same declaration /openapi.json is built from), runs the handler and turns
-- its result or error into (status, body, content type, route pattern).
--
-- Trusted code, loaded by src/routes.c as a chunk called with (sandbox, pt, db, files), where
-- files is a list of {path, chunkname}. Returns dispatch(req) -> status, body, ctype, pattern.
--
-- A route file returns a list of routes:
--   { method = "GET", path = "/api/patterns/usage/{pattern_id}", summary = "...",
--     query = { {name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20} },
--       (a query parameter's openapi_pattern and openapi_enum, a function called for each
--       /openapi.json, only document: what they say is checked elsewhere)
--     cache = true,  -- optional: reuse the 200 answer until new data is committed (or 1 s)
--     csv = "items", -- optional: the answer's rows can also be had as CSV (?format=csv or
--       Accept: text/csv): true when the answer is the array of rows, the name of the field
--       holding it, or a list of names (several arrays, a column `list` telling them apart);
--       the columns come from the 200 schema's item properties (lua/lib/pt/csv.lua)
--     handler = function(req) return body end }     -- or: return status, body[, content_type]
-- req: method, path, params (path), args (validated query), query (raw), headers, body, id.
-- A handler fails a request with pt.fail(status, detail).
local sandbox, pt, db, files = ...

local SUPPORTED = { GET = true, POST = true, PUT = true, DELETE = true, PATCH = true }
local TYPES = { integer = true, number = true, boolean = true, string = true }

local routes = {}
local modules = {}
local json_env = sandbox.env(modules)
local cjson = json_env.cjson
local csv = json_env.require("pt.csv")

function pt.fail(status, detail, extra)
    error({ status = status, detail = detail, extra = extra }, 0)
end

-- When a cached answer is still good: this engine has committed no new data since
-- (pt.data_version) and ttl has not passed (writes by other instances), or another request is
-- computing its successor right now (no pile-up of the same query on the pool), or it is an
-- expensive answer (over EXPENSIVE_S to compute) younger than STALE_FACTOR times its cost: under
-- steady ingest every flush changes the data, and recomputing a 5-second whole-table answer at
-- each one would keep the pool busy with it; this way at most 1 / (STALE_FACTOR + 1) of the
-- time goes to it, and the answer lags by at most STALE_FACTOR times its cost.
local EXPENSIVE_S, STALE_FACTOR = 0.1, 4
local function still_good(e, now, version, ttl)
    return e.refreshing or (e.version == version and now - e.at < ttl) or
        (e.took > EXPENSIVE_S and now - e.at < STALE_FACTOR * e.took)
end

-- Decodes a JSON request body; a malformed one is a 400 that says where.
function pt.decode_json(text)
    local ok, value = pcall(cjson.decode, text)
    if not ok then
        pt.fail(400, "invalid JSON body: " .. tostring(value):gsub("^.-:%d+: ", ""))
    end
    return value
end

local function compile(path)
    local segs = {}
    for seg in path:gmatch("[^/]+") do
        local name = seg:match("^{([%w_]+)}$")
        segs[#segs + 1] = name and { param = name } or seg
    end
    return segs
end

local function check_route(r, where)
    assert(type(r) == "table", where .. ": each route must be a table")
    assert(SUPPORTED[r.method], where .. ": method must be one of GET POST PUT DELETE PATCH")
    assert(type(r.path) == "string" and r.path:sub(1, 1) == "/",
        where .. ": path must start with /")
    assert(type(r.handler) == "function", where .. ": handler must be a function")
    assert(r.cache == nil or (r.cache == true and r.method == "GET"),
        where .. ": cache = true is for GET routes only")
    for _, q in ipairs(r.query or {}) do
        assert(type(q.name) == "string", where .. ": query parameters need a name")
        assert(TYPES[q.type], where .. ": query parameter " .. q.name .. " has an unknown type")
    end
end

-- A route with `csv`: its rows' lists (field names, or {false} for the answer itself), their
-- columns from the 200 schema, and the query parameter `format` that asks for them.
local function add_csv(r, where)
    local schema = r.responses and r.responses["200"] and r.responses["200"].schema
    assert(type(schema) == "table", where .. ": csv needs a 200 schema")
    local names = r.csv == true and { false } or type(r.csv) == "string" and { r.csv } or r.csv
    assert(type(names) == "table" and #names > 0, where .. ": csv must be true, a field or fields")
    local props, seen = {}, {}
    for _, n in ipairs(names) do
        local list = n and schema.properties and schema.properties[n] or (not n and schema)
        assert(type(list) == "table" and list.type == "array" and list.items,
            where .. ": csv field " .. tostring(n) .. " is not an array in the 200 schema")
        for k, v in pairs(list.items.properties or {}) do
            if not seen[k] then
                seen[k], props[k] = true, v
            end
        end
    end
    r._csv = { names = names, cols = csv.columns({ properties = props }) }
    r.query = r.query or {}
    r.query[#r.query + 1] = { name = "format", type = "string", enum = { "json", "csv" },
        description = "csv: the rows as RFC 4180 CSV (as Accept: text/csv asks too); the " ..
            "columns are the rows' fields in alphabetical order" ..
            (#names > 1 and ", after a column list naming the array of each row" or "") .. "." }
end

-- The answer's rows as CSV (the route's `csv`).
local function to_csv(r, value)
    local lists = {}
    for _, n in ipairs(r._csv.names) do
        lists[#lists + 1] = { n or "", (n and value[n] or (not n and value)) or {} }
    end
    return csv.encode(r._csv.cols, lists, #r._csv.names > 1)
end

-- Whether Accept prefers text/csv to JSON (q values; */* and application/* count as JSON).
local function accepts_csv(accept)
    if accept == nil then
        return false
    end
    local best_csv, best_json = -1, -1
    for part in accept:gmatch("[^,]+") do
        local mt = part:match("^%s*([^;%s]+)"):lower()
        local q = tonumber(part:match(";%s*[qQ]%s*=%s*([%d.]+)")) or 1
        if mt == "text/csv" then
            best_csv = math.max(best_csv, q)
        elseif mt == "application/json" or mt == "*/*" or mt == "application/*" then
            best_json = math.max(best_json, q)
        end
    end
    return best_csv > 0 and best_csv >= best_json
end

for _, f in ipairs(files) do
    local defs, env = sandbox.load_file(f[1], f[2], modules, { pt = pt, db = db })
    if defs == nil then
        error(type(env) == "string" and env or (f[2] .. ": must return a list of routes"), 0)
    end
    assert(type(defs) == "table", f[2] .. ": must return a list of routes")
    for i, r in ipairs(defs) do
        check_route(r, f[2] .. " route " .. i)
        if r.csv then
            add_csv(r, f[2] .. " route " .. i)
        end
        r.segs = compile(r.path)
        r.file = f[2]
        for _, other in ipairs(routes) do
            assert(not (other.method == r.method and other.path == r.path),
                f[2] .. ": " .. r.method .. " " .. r.path .. " is already defined in " ..
                    other.file)
        end
        routes[#routes + 1] = r
    end
end

-- Finds the route for a path: among routes whose segments match, the one whose first static
-- segment comes earliest where the others have a parameter wins (so /top beats /{pattern_id}).
local function match(segments)
    local methods = {}
    for _, r in ipairs(routes) do
        if #r.segs == #segments then
            local params, score, ok = {}, {}, true
            for i, s in ipairs(r.segs) do
                if type(s) == "table" then
                    params[s.param] = segments[i]
                    score[i] = 0
                elseif s == segments[i] then
                    score[i] = 1
                else
                    ok = false
                    break
                end
            end
            if ok then
                methods[#methods + 1] = r
                r._params, r._score = params, score
            end
        end
    end
    return methods
end

local function better(a, b)
    for i = 1, #a do
        if a[i] ~= b[i] then
            return a[i] > b[i]
        end
    end
    return false
end

local function validation_error(loc, msg, typ, ctx)
    return { loc = loc, msg = msg, type = typ, ctx = ctx }
end

-- Validates query parameters as FastAPI does, with its error shapes.
local function parse_args(r, query)
    local args, errors = {}, {}
    for _, q in ipairs(r.query or {}) do
        local raw = query[q.name]
        local loc = pt.array({ "query", q.name })
        if raw == nil then
            if q.required then
                errors[#errors + 1] = validation_error(loc, "field required", "value_error.missing")
            else
                args[q.name] = q.default
            end
        else
            local v
            if q.type == "integer" then
                v = raw:match("^%s*[-+]?%d+%s*$") and math.tointeger(tonumber(raw))
                if not v then
                    errors[#errors + 1] = validation_error(loc, "value is not a valid integer",
                        "type_error.integer")
                end
            elseif q.type == "number" then
                v = tonumber(raw)
                if not v or v ~= v or v == math.huge or v == -math.huge then
                    v = nil
                    errors[#errors + 1] = validation_error(loc, "value is not a valid float",
                        "type_error.float")
                end
            elseif q.type == "boolean" then
                local l = raw:lower()
                if l == "true" or l == "1" or l == "yes" or l == "on" then
                    v = true
                elseif l == "false" or l == "0" or l == "no" or l == "off" then
                    v = false
                else
                    errors[#errors + 1] = validation_error(loc,
                        "value could not be parsed to a boolean", "type_error.bool")
                end
            else
                v = raw
                if q.max_length and #raw > q.max_length then
                    errors[#errors + 1] = validation_error(loc,
                        "ensure this value has at most " .. q.max_length .. " characters",
                        "value_error.any_str.max_length", { limit_value = q.max_length })
                    v = nil
                elseif q.enum then
                    local found = false
                    for _, e in ipairs(q.enum) do
                        found = found or e == raw
                    end
                    if not found then
                        errors[#errors + 1] = validation_error(loc,
                            "value is not a valid enumeration member; permitted: '" ..
                                table.concat(q.enum, "', '") .. "'",
                            "type_error.enum", { enum_values = pt.array(q.enum) })
                        v = nil
                    end
                elseif q.pattern and not raw:match(q.pattern) then
                    errors[#errors + 1] = validation_error(loc,
                        "string does not match " .. (q.pattern_text or q.pattern),
                        "value_error.str.regex")
                    v = nil
                end
            end
            if v ~= nil and (q.type == "integer" or q.type == "number") then
                if q.minimum and v < q.minimum then
                    errors[#errors + 1] = validation_error(loc,
                        "ensure this value is greater than or equal to " .. q.minimum,
                        "value_error.number.not_ge", { limit_value = q.minimum })
                    v = nil
                elseif q.maximum and v > q.maximum then
                    errors[#errors + 1] = validation_error(loc,
                        "ensure this value is less than or equal to " .. q.maximum,
                        "value_error.number.not_le", { limit_value = q.maximum })
                    v = nil
                end
            end
            args[q.name] = v
        end
    end
    return args, errors
end

local function reply(status, body, pattern)
    return status, pt.json(body), "application/json", pattern
end

-- What /openapi.json says of path parameters, by name (names not here: a string and no more).
-- The examples are IDs from rules/tests; tests/integration/test_schemathesis.py seeds them.
local PATH_PARAMS = {
    pattern_id = { description = "A pattern ID, percent-encoded (a / in it as %2F)",
        example = "retry_with_backoff" },
    agent_name = { description = "An agent's name, percent-encoded (a / in it as %2F)",
        example = "agent-frontend" },
}

local function openapi()
    local paths = {}
    for _, r in ipairs(routes) do
        if not r.hidden then
            local item = paths[r.path] or {}
            paths[r.path] = item
            local params = {}
            for _, s in ipairs(r.segs) do
                if type(s) == "table" then
                    local doc = PATH_PARAMS[s.param] or {}
                    params[#params + 1] = { name = s.param, ["in"] = "path", required = true,
                        description = doc.description, example = doc.example,
                        schema = { type = "string", minLength = 1, maxLength = 255 } }
                end
            end
            for _, q in ipairs(r.query or {}) do
                local enum = q.enum or (q.openapi_enum and q.openapi_enum())
                local schema = { type = q.type, minimum = q.minimum, maximum = q.maximum,
                    default = q.default, maxLength = q.max_length,
                    enum = enum and pt.array(enum) or nil, pattern = q.openapi_pattern }
                params[#params + 1] = { name = q.name, ["in"] = "query",
                    required = q.required or false, description = q.description, schema = schema }
            end
            local responses = {}
            for code, desc in pairs(r.responses or { ["200"] = "OK" }) do
                local resp = { description = type(desc) == "table" and desc.description or desc }
                if type(desc) == "table" and desc.schema then
                    resp.content = {
                        [desc.content_type or "application/json"] = { schema = desc.schema } }
                    if r._csv and tostring(code) == "200" then
                        resp.content["text/csv"] = { schema = { type = "string",
                            description = "The rows as RFC 4180 CSV: header row, CRLF, UTF-8" } }
                    end
                else
                    resp.content = { ["application/json"] = { schema = {} } }
                end
                responses[tostring(code)] = resp
            end
            -- src/routes.c and src/http.c answer it before any route runs
            responses["400"] = responses["400"] or { description = "Malformed path or query " ..
                "(bad percent-encoding, not UTF-8, or a NUL byte), or a HEAD request with a body",
                content = { ["application/json"] = {
                    schema = { ["$ref"] = "#/components/schemas/Error" } } } }
            if r.query and #r.query > 0 then
                responses["422"] = { description = "Validation Error",
                    content = { ["application/json"] = {
                        schema = { ["$ref"] = "#/components/schemas/HTTPValidationError" } } } }
            end
            local op = { summary = r.summary, description = r.description,
                tags = r.tags and pt.array(r.tags),
                operationId = (r.method .. r.path):lower():gsub("[^%w]+", "_"):gsub("_$", ""),
                parameters = pt.array(params), responses = responses }
            if r.body then
                op.requestBody = { required = true, content = r.body }
            end
            item[r.method:lower()] = op
        end
    end
    return {
        openapi = "3.0.3",
        info = { title = "patterntrack", version = "0.1.0",
            description = "Pattern usage tracking: exact usage counts from Kafka events, " ..
                "and analytics over them." },
        paths = paths,
        components = { schemas = {
            ValidationError = { type = "object", required = pt.array({ "loc", "msg", "type" }),
                properties = { loc = { type = "array",
                    items = { anyOf = pt.array({ { type = "string" }, { type = "integer" } }) } },
                    msg = { type = "string" }, type = { type = "string" } } },
            Error = { type = "object", required = pt.array({ "detail" }),
                properties = { detail = { type = "string" }, error_id = { type = "string" } } },
            HTTPValidationError = { type = "object",
                properties = { detail = { type = "array",
                    items = { ["$ref"] = "#/components/schemas/ValidationError" } } } },
        } },
    }
end

routes[#routes + 1] = { method = "GET", path = "/openapi.json", segs = compile("/openapi.json"),
    summary = "This document", file = "lua/pt/router.lua",
    handler = function() return openapi() end }

local function run(r, req)
    local ok, a, b, c = xpcall(r.handler, pt.traceback, req)
    if ok then
        if type(a) == "number" then
            if type(b) == "string" and c then
                return a, b, c, r.path
            end
            return a, pt.json(b == nil and pt.null or b), "application/json", r.path
        end
        if r._csv and req.args.format == "csv" and type(a) == "table" then
            return 200, to_csv(r, a), "text/csv; charset=utf-8", r.path
        end
        return 200, pt.json(a == nil and pt.null or a), "application/json", r.path
    end
    if type(a) == "table" and a.status then
        local body = { detail = a.detail }
        if a.status >= 500 then
            body.error_id = tostring(req.id)
            pt.log("warn", "request " .. req.id .. " " .. req.method .. " " .. req.raw_path ..
                ": " .. tostring(a.detail))
        end
        for k, v in pairs(a.extra or {}) do
            body[k] = v
        end
        return reply(a.status, body, r.path)
    end
    pt.log("error", "request " .. req.id .. " " .. req.method .. " " .. req.raw_path ..
        " (" .. r.file .. "): " .. tostring(a))
    return reply(500, { detail = "Internal Server Error", error_id = tostring(req.id) }, r.path)
end

-- The one answer cache: for routes declared with `cache = true`, the encoded body of a 200, per
-- route and validated arguments, reused while still_good. Bounded: at most CACHE_MAX answers per
-- route and none over CACHE_BODY_MAX bytes. A full route keeps the CACHE_KEEP answers that took
-- longest to compute and drops the rest: with keys spread over many patterns, dropping all
-- threw away the few that cost 100 ms (a pattern with tens of thousands of partners) along
-- with the many that cost 1 ms.
local CACHE_MAX, CACHE_KEEP, CACHE_BODY_MAX, CACHE_TTL = 1024, 128, 1048576, 1.0
local answers = {}

-- Refresh ahead: when Kafka flushes of this engine are all that changed since a cached answer
-- (not a write its client may read back: see pt.data_version) and the answer's snapshot is
-- younger than CACHE_TTL (or, for an expensive one, than STALE_FACTOR + 2 times its cost), the
-- request is answered with it at once and then computes its successor for the requests after
-- it. Under steady ingest every flush changes the data, so without this one request in each
-- flush interval waited for the whole computation: that was the answers' p99 under load
-- (BENCHMARKS.md). An answer is then at most that much older than its data, as under ttl.
local function ahead_ok(e, now, version, written)
    local age = now - (e.at - e.took)
    return e.version ~= version and e.written == written and
        age < math.max(CACHE_TTL, (STALE_FACTOR + 2) * e.took)
end

local function cache_key(req)
    local parts = {}
    for k, v in pairs(req.params) do
        parts[#parts + 1] = "p" .. k .. "=" .. tostring(v)
    end
    for k, v in pairs(req.args) do
        parts[#parts + 1] = "a" .. k .. "=" .. tostring(v)
    end
    table.sort(parts)
    return table.concat(parts, "\0")
end

local function run_cached(r, req)
    local per = answers[r]
    if per == nil then
        per = { n = 0, entries = {} }
        answers[r] = per
    end
    local key = cache_key(req)
    local e = per.entries[key]
    local now, version, written = pt.now(), pt.data_version()
    if e and e.body and still_good(e, now, version, CACHE_TTL) then
        return 200, e.body, e.ctype, r.path
    end
    if e and e.body and ahead_ok(e, now, version, written) then
        pt.reply_early(200, e.body, e.ctype, r.path)
    end
    if e == nil then
        if per.n >= CACHE_MAX then
            -- answers being computed stay (their requests will fill them in)
            local kept, n, done = {}, 0, {}
            for k, v in pairs(per.entries) do
                if v.refreshing then
                    kept[k], n = v, n + 1
                elseif v.body then
                    done[#done + 1] = k
                end
            end
            local old = per.entries
            table.sort(done, function(a, b) return old[a].took > old[b].took end)
            for i = 1, math.min(CACHE_KEEP, #done) do
                kept[done[i]], n = old[done[i]], n + 1
            end
            per.n, per.entries = n, kept
        end
        e = {}
        per.entries[key] = e
        per.n = per.n + 1
    end
    e.refreshing = true
    local status, body, ctype, pattern = run(r, req)
    e.refreshing = false
    if status == 200 and #body <= CACHE_BODY_MAX then
        local done = pt.now()
        e.body, e.ctype, e.at, e.version, e.took = body, ctype, done, version, done - now
        e.written = written
    end
    return status, body, ctype, pattern
end

return function(req)
    local method = req.method == "HEAD" and "GET" or req.method
    local candidates = match(req.segments)
    local best
    for _, r in ipairs(candidates) do
        if r.method == method and (best == nil or better(r._score, best._score)) then
            best = r
        end
    end
    if best == nil then
        if #candidates > 0 then
            return reply(405, { detail = "Method Not Allowed" }, "unmatched")
        end
        return reply(404, { detail = "Not Found" }, "unmatched")
    end
    req.params = best._params
    local args, errors = parse_args(best, req.query)
    if #errors > 0 then
        return reply(422, { detail = pt.array(errors) }, best.path)
    end
    req.args = args
    if best._csv and req.query.format == nil and accepts_csv(req.headers.accept) then
        args.format = "csv" -- before the cache key is made of args
    end
    if best.cache then
        return run_cached(best, req)
    end
    return run(best, req)
end
