-- Default rule for agent-actions: which patterns an agent's action (a tool call) referenced.
--
-- References, concatenated, from the event and then from an object `payload`:
--   patterns            a list of references;
--   pattern_ids         a list of IDs, or a single ID string;
--   metadata.patterns   a list of references (when `metadata` is an object).
-- action_details.pattern and action_details.glob_pattern are Grep/Glob search regexes, not
-- pattern references: action_details is never read.
-- The event ID (for the host's deduplication) is refs.event_id's: event_id, else id, else
-- correlation_id@timestamp, each from the event then `payload`; nil when there is none, and
-- not looked for unless the topic is deduplicated (meta.dedupe: the host reads it only then).
-- Returns agent, patterns, time, nil, event_id (see lua/lib/pt/refs.lua).

local refs = require("pt.refs")
local add_refs, add_ids = refs.add_refs, refs.add_ids
local payload_of, agent_of, time_of, event_id_of = refs.payload, refs.agent, refs.time,
    refs.event_id
local type = type

-- Appends the references found in one level (the event or its payload); returns the new length.
local function level(t, out, n)
    n = add_refs(out, n, t.patterns)
    n = add_ids(out, n, t.pattern_ids)
    local metadata = t.metadata
    if type(metadata) == "table" then
        n = add_refs(out, n, metadata.patterns)
    end
    return n
end

return function(event, meta)
    local out = {}
    if type(event) ~= "table" then
        return "unknown", out, nil, nil
    end
    local payload = payload_of(event)
    local n = level(event, out, 0)
    if payload ~= nil then
        level(payload, out, n)
    end
    return agent_of(event, payload, "agent_name"), out, time_of(event, payload), nil,
        meta.dedupe and event_id_of(event, payload) or nil
end
