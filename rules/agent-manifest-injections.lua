-- Default rule for agent-manifest-injections: which patterns a manifest injected into an agent.
--
-- References, concatenated, from the event and then from an object `payload`:
--   patterns                 a list, or the manifest's patterns section {available: [...]};
--   manifest.patterns        the same, read only when `patterns` gave no list (the seed's
--                            "if absent");
--   patterns_discovered      a list of pattern names;
--   pattern_ids              a list of IDs (or a single ID string);
--   full_manifest_snapshot.patterns  the snapshot's patterns section: its `available` list
--                            of {name, file, ...} objects (a plain list is read too).
-- confidence_scores is keyed by pattern name but is not a reference list; it is not read.
-- Note "count_without_list": patterns_count/pattern_count > 0 at either level and no list
-- under any of the keys above at either level (the host counts these extraction gaps).
-- The event ID (for the host's deduplication) is refs.event_id's: event_id, else id, else
-- correlation_id@timestamp, each from the event then `payload`; nil when there is none, and
-- not looked for unless the topic is deduplicated (meta.dedupe: the host reads it only then).
-- Returns agent, patterns, time, note, event_id (see lua/lib/pt/refs.lua).

local refs = require("pt.refs")
local add_refs, add_ids, add_section = refs.add_refs, refs.add_ids, refs.add_section
local payload_of, agent_of, time_of, has_count, event_id_of = refs.payload, refs.agent,
    refs.time, refs.has_count, refs.event_id
local type = type

-- Appends the references found in one level (the event or its payload). Returns the new
-- length and whether any reference list was present.
local function level(t, out, n)
    local found, f
    n, found = add_section(out, n, t.patterns)
    if not found then
        local manifest = t.manifest
        if type(manifest) == "table" then
            n, found = add_section(out, n, manifest.patterns)
        end
    end
    n, f = add_refs(out, n, t.patterns_discovered)
    found = found or f
    n, f = add_ids(out, n, t.pattern_ids)
    found = found or f
    local snapshot = t.full_manifest_snapshot
    if type(snapshot) == "table" then
        n, f = add_section(out, n, snapshot.patterns)
        found = found or f
    end
    return n, found
end

return function(event, meta)
    local out = {}
    if type(event) ~= "table" then
        return "unknown", out, nil, nil
    end
    local payload = payload_of(event)
    local n, found = level(event, out, 0)
    if payload ~= nil then
        local _, f = level(payload, out, n)
        found = found or f
    end
    local note = nil
    if not found and (has_count(event) or (payload ~= nil and has_count(payload))) then
        note = "count_without_list"
    end
    return agent_of(event, payload, "agent_name"), out, time_of(event, payload), note,
        meta.dedupe and event_id_of(event, payload) or nil
end
