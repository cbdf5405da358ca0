-- Default rule for agent-routing-decisions: which patterns influenced the choice of an agent.
--
-- The agent is `selected_agent` (real events have no agent_name), else `agent_name`, each
-- looked up in the event and then in an object `payload`.
-- References, concatenated, from the event and then from an object `payload`:
--   patterns_used                   a list of references;
--   confidence_components.patterns  a list of references (when the parent is an object);
--   context.patterns                a list of references (when the parent is an object).
-- confidence_scores, alternatives and the like are not reference lists and are not read.
-- The event ID (for the host's deduplication) is refs.event_id's: event_id, else id, else
-- correlation_id@timestamp, each from the event then `payload`; nil when there is none, and
-- not looked for unless the topic is deduplicated (meta.dedupe: the host reads it only then).
-- Returns agent, patterns, time, nil, event_id (see lua/lib/pt/refs.lua).

local refs = require("pt.refs")
local add_refs = refs.add_refs
local payload_of, agent_of, time_of, event_id_of = refs.payload, refs.agent, refs.time,
    refs.event_id
local type = type

-- Appends the references found in one level (the event or its payload); returns the new length.
local function level(t, out, n)
    n = add_refs(out, n, t.patterns_used)
    local parent = t.confidence_components
    if type(parent) == "table" then
        n = add_refs(out, n, parent.patterns)
    end
    parent = t.context
    if type(parent) == "table" then
        n = add_refs(out, n, parent.patterns)
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
    return agent_of(event, payload, "selected_agent", "agent_name"), out,
        time_of(event, payload), nil, meta.dedupe and event_id_of(event, payload) or nil
end
