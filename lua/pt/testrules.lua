-- `patterntrack test-rules`: runs rule fixture files through the rules, in the production
-- sandbox, and prints one line per case with a diff on failure (as `vector test` does for
-- transforms). Trusted code, called by src/main.c as a chunk with
--   (sandbox, readfile, files, rule_for, budget_call)
-- files: list of fixture paths; rule_for(topic) -> rule file path; budget_call(fn, ...) runs
-- fn under the instruction budget and returns pcall-style results.
-- A fixture file is a JSON array of cases:
--   {"name": "...", "topic": "optional, else the file name", "event": {...}, "meta": {...},
--    "expect": {"agent": "...", "patterns": [sorted distinct IDs], "time": "..."|null,
--               "note": "..."|null, "event_id": "..."|null}}
-- The rule returns agent, patterns, time, note, event_id. A missing or null time or note expects
-- nil. event_id is compared only when expect has the key (null expects none); fixtures without
-- it do not check the event ID.
-- Returns the number of failed cases.
local sandbox, readfile, files, rule_for, budget_call = ...

local env = sandbox.env({})
local cjson = env.cjson
local null = cjson.null

local function sorted_distinct(list)
    local seen, out = {}, {}
    for _, v in ipairs(list or {}) do
        local k = type(v) == "string" and v or ("<" .. type(v) .. ">")
        if not seen[k] then
            seen[k] = true
            out[#out + 1] = k
        end
    end
    table.sort(out)
    return out
end

local function show(v)
    if v == nil or v == null then
        return "null"
    end
    if type(v) == "number" then
        return tostring(v)
    end
    if type(v) == "table" then
        local parts = {}
        for i, x in ipairs(v) do
            parts[i] = show(x)
        end
        return "[" .. table.concat(parts, ", ") .. "]"
    end
    return string.format("%q", tostring(v))
end

local function same_list(a, b)
    if #a ~= #b then
        return false
    end
    for i = 1, #a do
        if a[i] ~= b[i] then
            return false
        end
    end
    return true
end

local failed, passed = 0, 0
local rules = {}
local modules = {}

local function load_rule(topic)
    if rules[topic] == nil then
        local path, chunk = rule_for(topic)
        local fn, err = sandbox.load_rule(path, chunk, modules)
        rules[topic] = fn or err
    end
    return rules[topic]
end

for _, file in ipairs(files) do
    local text, err = readfile(file)
    local ok, cases = false, nil
    if text then
        ok, cases = pcall(cjson.decode, text)
    end
    if not text or not ok or type(cases) ~= "table" then
        print(string.format("FAIL %s: cannot read fixtures: %s", file, tostring(err or cases)))
        failed = failed + 1
    else
        local default_topic = file:match("([^/]+)%.json$")
        for i, case in ipairs(cases) do
            local topic = case.topic or default_topic
            local name = string.format("%s #%d %s", topic, i, case.name or "")
            local rule = load_rule(topic)
            local diffs = {}
            if type(rule) ~= "function" then
                diffs[1] = "rule does not load: " .. tostring(rule)
            else
                -- as on a deduplicated topic (meta.dedupe), so that rules give their event IDs
                local base = case.meta or { topic = topic }
                local meta = setmetatable({}, { __index = function(_, k)
                    local v = base[k]
                    if k == "dedupe" and v == nil then
                        return true
                    end
                    return v
                end, __newindex = function()
                    error("meta is read-only")
                end })
                local rok, agent, patterns, time, note, event_id =
                    budget_call(rule, case.event, meta)
                local want = case.expect or {}
                if not rok then
                    diffs[1] = "rule raised: " .. tostring(agent)
                else
                    if agent == nil or agent == false then
                        agent = "unknown"
                    end
                    if want.agent ~= nil and agent ~= want.agent then
                        diffs[#diffs + 1] = "agent: got " .. show(agent) .. ", want " ..
                            show(want.agent)
                    end
                    local got = sorted_distinct(type(patterns) == "table" and patterns or {})
                    local exp = sorted_distinct(want.patterns)
                    if not same_list(got, exp) then
                        diffs[#diffs + 1] = "patterns: got " .. show(got) .. ", want " .. show(exp)
                    end
                    local wt = want.time
                    if wt == null then
                        wt = nil
                    end
                    if wt ~= time then
                        diffs[#diffs + 1] = "time: got " .. show(time) .. ", want " .. show(wt)
                    end
                    local wn = want.note
                    if wn == null then
                        wn = nil
                    end
                    if wn ~= note then
                        diffs[#diffs + 1] = "note: got " .. show(note) .. ", want " .. show(wn)
                    end
                    local we = want.event_id
                    if we ~= nil then
                        if we == null then
                            we = nil
                        end
                        if we ~= event_id then
                            diffs[#diffs + 1] = "event_id: got " .. show(event_id) .. ", want "
                                .. show(we)
                        end
                    end
                end
            end
            if #diffs == 0 then
                passed = passed + 1
                print("ok   " .. name)
            else
                failed = failed + 1
                print("FAIL " .. name)
                for _, d in ipairs(diffs) do
                    print("       " .. d)
                end
            end
        end
    end
end
print(string.format("%d passed, %d failed", passed, failed))
return failed
