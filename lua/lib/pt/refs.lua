-- pt.refs: the building blocks of the default extraction rules (rules/*.lua).
--
-- Owns: what a pattern reference is, how a list of them is read, and how the agent name, the
-- raw event time and the event ID are found (top level first, then an object `payload`
-- envelope). The rules own which fields of which topic hold references; the C host owns
-- validating pattern IDs, parsing the time, counting a pattern once per event and skipping an
-- event whose ID it has already counted.
--
-- Every function accepts any value where a table is expected (JSON can put a string, a number,
-- a boolean, cjson.null or a list anywhere) and never raises. Nothing here allocates a table:
-- the caller passes the output sequence `out` and its length `n`, and gets the new length back
-- (event_id builds only the string it returns).
-- JSON tables come from lua-cjson: arrays are dense sequences (null is cjson.null, never nil),
-- objects have only string keys, so `t[1]` and `#t` only ever see array elements and an
-- object's keys are never mistaken for pattern IDs.

local type, next = type, next
local math_type, tointeger, format = math.type, math.tointeger, string.format

local M = {}

-- The ID a reference names, or nil. A string is the ID as-is, even when empty (the host judges
-- validity). An object names the first of pattern_id, id, name that is a non-empty string;
-- a key holding anything else (a number, null, a list) is skipped as if absent. Any other
-- value references nothing.
local function ref_id(v)
    local tv = type(v)
    if tv == "string" then
        return v
    end
    if tv ~= "table" then
        return nil
    end
    local id = v.pattern_id
    if type(id) == "string" and id ~= "" then
        return id
    end
    id = v.id
    if type(id) == "string" and id ~= "" then
        return id
    end
    id = v.name
    if type(id) == "string" and id ~= "" then
        return id
    end
    return nil
end
M.ref_id = ref_id

-- True when `t` is a table that reads as a JSON array: it has a first element, or it is empty
-- (lua-cjson decodes [] and {} alike, so an empty table counts as an empty list).
local function is_list(t)
    return type(t) == "table" and (t[1] ~= nil or next(t) == nil)
end
M.is_list = is_list

-- Appends the references of `list`. Returns the new length and whether `list` was a list.
local function add_refs(out, n, list)
    if not is_list(list) then
        return n, false
    end
    for i = 1, #list do
        local id = ref_id(list[i])
        if id ~= nil then
            n = n + 1
            out[n] = id
        end
    end
    return n, true
end
M.add_refs = add_refs

-- Appends `v` when it is a single ID string, else the references of the list `v`.
-- Returns the new length and whether anything usable (a string or a list) was there.
function M.add_ids(out, n, v)
    if type(v) == "string" then
        n = n + 1
        out[n] = v
        return n, true
    end
    return add_refs(out, n, v)
end

-- Appends the references of a manifest patterns section: either a list of references, or an
-- object whose `available` list holds them ({available, total_count, query_time_ms, ...}).
-- The object's own keys are never references. Returns the new length and whether a list was
-- found.
function M.add_section(out, n, v)
    if type(v) ~= "table" then
        return n, false
    end
    local available = v.available
    if available ~= nil then
        return add_refs(out, n, available)
    end
    return add_refs(out, n, v)
end

-- The envelope's payload when it is a table, else nil. Rules read every field from the event
-- and then from this.
function M.payload(event)
    local p = event.payload
    if type(p) == "table" then
        return p
    end
    return nil
end

-- The value of `key` in `t` when it is a non-empty string, else nil.
local function str(t, key)
    local v = t[key]
    if type(v) == "string" and v ~= "" then
        return v
    end
    return nil
end
M.str = str

-- The agent: the first non-empty string among event[key], payload[key], then the same for
-- `key2` when given; "unknown" when there is none.
function M.agent(event, payload, key, key2)
    local v = str(event, key)
    if v == nil and payload ~= nil then
        v = str(payload, key)
    end
    if v == nil and key2 ~= nil then
        v = str(event, key2)
        if v == nil and payload ~= nil then
            v = str(payload, key2)
        end
    end
    return v or "unknown"
end

-- The raw event time: the first non-empty string among event.timestamp, event.created_at,
-- payload.timestamp, payload.created_at; nil when there is none. Parsing (and falling back to
-- the Kafka timestamp) is the host's job.
function M.time(event, payload)
    local v = str(event, "timestamp") or str(event, "created_at")
    if v == nil and payload ~= nil then
        v = str(payload, "timestamp") or str(payload, "created_at")
    end
    return v
end

-- The longest event ID the host accepts, in bytes.
local ID_MAX = 255
-- lua-cjson decodes every JSON number as a float, and a float of magnitude 2^53 or more may be
-- a different integer rounded (9007199254740993 arrives as 9007199254740992.0): two events
-- would share an ID and one would be skipped. Such numbers identify nothing.
local FLOAT_EXACT = 2 ^ 53

-- The ID form of t[key], or nil when it is absent: a non-empty string as-is; an integer, or an
-- integral float under 2^53 in magnitude, in decimal ("%d", so 42 and 42.0 both give "42").
-- Empty strings, other numbers (fractions, NaN, infinities, big floats), booleans, null and
-- tables are absent.
local function id_part(t, key)
    local v = t[key]
    local tv = type(v)
    if tv == "string" then
        if v ~= "" then
            return v
        end
        return nil
    end
    if tv ~= "number" then
        return nil
    end
    if math_type(v) == "float" then
        if not (v > -FLOAT_EXACT and v < FLOAT_EXACT) then
            return nil
        end
        v = tointeger(v)
        if v == nil then
            return nil
        end
    end
    return format("%d", v)
end

-- id_part of event[key], else of payload[key] (payload a table or nil).
local function id_at(event, payload, key)
    local v = id_part(event, key)
    if v == nil and payload ~= nil then
        v = id_part(payload, key)
    end
    return v
end

-- The event's ID for the host's deduplication, or nil when it has none. The first present of
--   event_id            (the event, then payload);
--   id                  (the event, then payload);
--   correlation_id .. "@" .. timestamp, when both are present, each looked up in the event
--                       then payload; the timestamp is the raw value, not a parsed time.
-- "Present" is id_part's: a non-empty string, or an integral number in decimal. An ID over
-- ID_MAX bytes gives nil: the event is counted without deduplication. It is not cut (two long
-- IDs sharing a prefix would collide and one event would be lost) and the next field is not
-- tried (the event's own ID was found; a weaker one could collide the same way).
function M.event_id(event, payload)
    if type(event) ~= "table" then
        return nil
    end
    if type(payload) ~= "table" then
        payload = nil
    end
    local id = id_at(event, payload, "event_id") or id_at(event, payload, "id")
    if id == nil then
        local corr = id_at(event, payload, "correlation_id")
        if corr == nil then
            return nil
        end
        local ts = id_at(event, payload, "timestamp")
        if ts == nil then
            return nil
        end
        id = corr .. "@" .. ts
    end
    if #id > ID_MAX then
        return nil
    end
    return id
end

-- True when `t` carries a pattern count > 0 under `patterns_count` or `pattern_count`.
function M.has_count(t)
    local c = t.patterns_count
    if type(c) == "number" and c > 0 then
        return true
    end
    c = t.pattern_count
    return type(c) == "number" and c > 0
end

return M
