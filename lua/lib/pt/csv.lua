-- CSV (RFC 4180) of the rows of a JSON answer, for the routes that declare `csv` (lua/pt/router.lua
-- adds ?format=csv and Accept: text/csv to them). The rules, as /openapi.json and the README say:
--   * a header row, then one row per item; CRLF line ends; UTF-8;
--   * the columns are the properties of the items in the route's 200 schema, in alphabetical
--     order (so an empty answer still has its header); when the route lists several arrays, a
--     first column `list` names the array a row comes from;
--   * null is an empty field; true and false as such; numbers as JSON writes them;
--   * an array of plain values is its values joined by ';' (a ';' or '\' inside one is escaped
--     with '\'); an object is its JSON text;
--   * a field holding a comma, a double quote, CR or LF is quoted, its quotes doubled.
local cjson = cjson -- every sandbox environment has its own (lua/pt/sandbox.lua)

local M = {}

local function scalar(v)
    local t = type(v)
    if v == nil or v == cjson.null then
        return ""
    elseif t == "boolean" then
        return v and "true" or "false"
    elseif t == "number" then
        if math.type(v) == "integer" then
            return tostring(v)
        end
        return cjson.encode(v)
    elseif t == "string" then
        return v
    end
    return nil
end

local function field(v)
    local s = scalar(v)
    if s == nil then
        -- a table: an array of plain values (1..n, nothing else) or anything else as JSON
        local n, plain = 0, true
        for k, x in pairs(v) do
            n = n + 1
            plain = plain and math.type(k) == "integer" and scalar(x) ~= nil
        end
        if plain and n == #v then
            local parts = {}
            for i = 1, n do
                parts[i] = scalar(v[i]):gsub("[\\;]", "\\%0")
            end
            s = table.concat(parts, ";")
        else
            s = cjson.encode(v)
        end
    end
    if s:find('[,"\r\n]') then
        s = '"' .. s:gsub('"', '""') .. '"'
    end
    return s
end

-- The sorted property names of an item schema ({type = "object", properties = ...}).
function M.columns(item_schema)
    local cols = {}
    for k in pairs(item_schema and item_schema.properties or {}) do
        cols[#cols + 1] = k
    end
    table.sort(cols)
    return cols
end

-- CSV text of lists = { {name, rows}, ... } with the given columns; with more than one list
-- (or named = true) a first column `list` holds the list's name.
function M.encode(cols, lists, named)
    local out = {}
    local header = {}
    if named then
        header[1] = "list"
    end
    for _, c in ipairs(cols) do
        header[#header + 1] = field(c)
    end
    out[1] = table.concat(header, ",")
    for _, l in ipairs(lists) do
        for _, row in ipairs(l[2]) do
            local f = {}
            if named then
                f[1] = field(l[1])
            end
            for _, c in ipairs(cols) do
                f[#f + 1] = field(row[c])
            end
            out[#out + 1] = table.concat(f, ",")
        end
    end
    return table.concat(out, "\r\n") .. "\r\n"
end

return M
