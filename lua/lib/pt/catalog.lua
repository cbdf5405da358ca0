-- The pattern catalog: registering patterns (name, type, creation time) makes "unused" mean
-- something without another system writing pattern_lineage_nodes. Validated here, written by
-- pt_register_patterns (lua/routes/catalog.lua declares the routes).
local M = {}

local MAX_ID = 255
-- The lifecycle of a pattern (the CHECK of pattern_lineage_nodes.status).
local STATUSES = { active = true, deprecated = true, retired = true }

local function check_pattern(p, where)
    if type(p) ~= "table" then
        return where .. ": each pattern must be a JSON object"
    end
    local id = p.pattern_id
    if type(id) ~= "string" or #id == 0 or #id > MAX_ID then
        return where .. ": pattern_id must be a string of 1 to 255 bytes"
    end
    for _, k in ipairs({ "pattern_id", "pattern_name", "pattern_type", "created_at", "status" }) do
        local v = p[k]
        if v ~= nil and v ~= pt.null and type(v) ~= "string" then
            return where .. ": " .. k .. " must be a string"
        end
        -- PostgreSQL text holds neither (a JSON body can carry both: \u0000, raw bytes)
        if type(v) == "string" and (not utf8.len(v) or v:find("\0", 1, true)) then
            return where .. ": " .. k .. " must be UTF-8 text without NUL characters"
        end
    end
    if type(p.created_at) == "string" and not pt.normalize_time(p.created_at) then
        return where .. ": created_at must be an ISO-8601 time in years 1 to 9999"
    end
    if type(p.pattern_type) == "string" and #p.pattern_type > 100 then
        return where .. ": pattern_type is at most 100 characters"
    end
    if type(p.status) == "string" and not STATUSES[p.status] then
        return where .. ": status must be active, deprecated or retired"
    end
    return nil
end

local function str(v)
    if type(v) == "string" then
        return v
    end
    return nil
end

-- One call for any number of patterns: arrays in, a set-based upsert in pt_register_patterns
-- (sql/009_agent_profiles.sql), which also moves the agent profiles of a pattern whose type
-- changes. A pattern given without created_at keeps its own (a new one gets now()); a status
-- not given is the current one (a new pattern is active).
local REGISTER = [[
SELECT inserted FROM pt_register_patterns($1::text[], $2::text[], $3::text[],
                                          $4::timestamptz[], $5::text[])]]

local function literal(list)
    -- a text[] literal with every element quoted; nil becomes NULL
    local parts = {}
    for i = 1, list.n do
        local v = list[i]
        if v == nil then
            parts[i] = "NULL"
        else
            parts[i] = '"' .. v:gsub('[\\"]', "\\%0") .. '"'
        end
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

local function register(patterns)
    local ids, names, types, created = { n = #patterns }, { n = #patterns }, { n = #patterns },
        { n = #patterns }
    local statuses = { n = #patterns }
    local seen = {}
    for i, p in ipairs(patterns) do
        if seen[p.pattern_id] then
            pt.fail(400, "pattern " .. i .. ": pattern_id " .. p.pattern_id ..
                " appears twice in one request")
        end
        seen[p.pattern_id] = true
        ids[i], names[i], types[i] = p.pattern_id, str(p.pattern_name), str(p.pattern_type)
        -- PostgreSQL gets our reading of the time, not the client's text (which it might read
        -- otherwise, or refuse: offsets beyond 15:59, a decimal comma)
        created[i] = str(p.created_at) and pt.normalize_time(p.created_at)
        statuses[i] = str(p.status)
    end
    local rows = db.query(REGISTER, literal(ids), literal(names), literal(types), literal(created),
        literal(statuses))
    if pt.data_changed then
        pt.data_changed() -- cached answers that read the catalog are stale now
    end
    local inserted = 0
    for _, r in ipairs(rows) do
        if r.inserted then
            inserted = inserted + 1
        end
    end
    return { registered = #rows, created = inserted, updated = #rows - inserted }
end

-- PUT /api/patterns/{pattern_id}: one pattern, its ID from the path.
function M.put_one(req)
        local p = {}
        if req.body:match("%S") then
            -- cjson decodes {} and [] alike: look at the text to tell an object
            if not req.body:match("^%s*{") then
                pt.fail(400, "the body must be a JSON object")
            end
            p = pt.decode_json(req.body)
        end
        if p.pattern_id ~= nil and p.pattern_id ~= req.params.pattern_id then
            pt.fail(400, "pattern_id in the body differs from the one in the path")
        end
        p.pattern_id = req.params.pattern_id
        local bad = check_pattern(p, "pattern")
        if bad then
            pt.fail(400, bad)
        end
        return register({ p })
end

-- POST /api/patterns: many patterns, a JSON array or NDJSON.
function M.post_many(req)
        local ctype = (req.headers["content-type"] or ""):lower()
        local list
        if ctype:find("ndjson", 1, true) or ctype:find("jsonl", 1, true) then
            list = {}
            local n = 0
            for line in req.body:gmatch("[^\n]+") do
                n = n + 1
                if line:match("%S") then
                    local ok, v = pcall(pt.decode_json, line)
                    if not ok then
                        pt.fail(400, "line " .. n .. ": " ..
                            (type(v) == "table" and v.detail or tostring(v)))
                    end
                    if not line:match("^%s*{") then
                        pt.fail(400, "line " .. n .. ": each line must be a JSON object")
                    end
                    list[#list + 1] = v
                end
            end
        else
            if not req.body:match("^%s*%[") then
                pt.fail(400, "the body must be a JSON array of patterns (or NDJSON)")
            end
            list = pt.decode_json(req.body)
        end
        if #list == 0 then
            return { registered = 0, created = 0, updated = 0 }
        end
        if #list > 10000 then
            pt.fail(413, "at most 10000 patterns per request")
        end
        for i, p in ipairs(list) do
            local bad = check_pattern(p, "pattern " .. i)
            if bad then
                pt.fail(400, bad)
            end
        end
        return register(list)
end

return M
