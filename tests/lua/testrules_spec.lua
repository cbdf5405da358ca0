-- `patterntrack test-rules` (lua/pt/testrules.lua), run as src/main.c runs it but with a plain
-- pcall for the instruction budget: the shipped fixtures pass, and the event ID (the rule's
-- fifth value) is compared only when a case's expect has the key.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helper.lua")
local cjson = H.cjson

-- A rule whose fifth value is the event's `eid` (cjson.null and absent give nil); `int = true`
-- turns it into a Lua integer, which lua-cjson never decodes.
local RULE = [[
return function(event)
    local v = event.eid
    if v == cjson.null then
        v = nil
    end
    if event.int then
        v = math.tointeger(v)
    end
    return "a", {}, nil, nil, v
end]]

local function write(path, text)
    local f = assert(io.open(path, "wb"))
    f:write(text)
    f:close()
end

-- Runs testrules.lua over `files` with every topic's rule at `rule_path` (nil: rules/<topic>).
-- Returns the number of failed cases and the printed lines.
local function run(files, rule_path)
    local lines = {}
    local env = setmetatable({ print = function(s) lines[#lines + 1] = s end }, { __index = _G })
    local chunk = assert(loadfile(H.root .. "/lua/pt/testrules.lua", "t", env))
    local function rule_for(topic)
        if rule_path then
            return rule_path, "test-rule.lua"
        end
        return "rules/" .. topic .. ".lua", "rules/" .. topic .. ".lua"
    end
    local function budget_call(fn, ...)
        return pcall(fn, ...)
    end
    local failed = chunk(H.sandbox, H.readfile, files, rule_for, budget_call)
    return failed, lines
end

-- Runs one fixture case {event, expect} through RULE; returns failed count and output text.
local function run_case(event, expect_json)
    local base = os.tmpname()
    local rule_path, fixture = base .. ".lua", base .. ".json"
    write(rule_path, RULE)
    write(fixture, '[{"name": "case", "event": ' .. cjson.encode(event) .. ', "expect": '
        .. expect_json .. "}]")
    local failed, lines = run({ fixture }, rule_path)
    os.remove(rule_path)
    os.remove(fixture)
    os.remove(base)
    return failed, table.concat(lines, "\n")
end

describe("test-rules", function()
    it("passes every shipped fixture", function()
        local files = {}
        for i, topic in ipairs(H.topics) do
            files[i] = H.root .. "/rules/tests/" .. topic .. ".json"
        end
        local failed, lines = run(files)
        assert.are.equal(0, failed, table.concat(lines, "\n"))
        assert.matches("^%d+ passed, 0 failed$", lines[#lines])
    end)

    it("passes an event ID equal to expect.event_id", function()
        local failed, out = run_case({ eid = "e-1" }, '{"agent": "a", "event_id": "e-1"}')
        assert.are.equal(0, failed, out)
        assert.matches("ok   ", out, 1, true)
    end)

    it("reports a different event ID with both values", function()
        local failed, out = run_case({ eid = "e-2" }, '{"agent": "a", "event_id": "e-1"}')
        assert.are.equal(1, failed)
        assert.matches('event_id: got "e-2", want "e-1"', out, 1, true)
    end)

    it("reports a missing event ID when one is expected", function()
        local failed, out = run_case({}, '{"agent": "a", "event_id": "e-1"}')
        assert.are.equal(1, failed)
        assert.matches('event_id: got null, want "e-1"', out, 1, true)
    end)

    it("reads a JSON null in expect.event_id as 'expect none'", function()
        local failed, out = run_case({}, '{"agent": "a", "event_id": null}')
        assert.are.equal(0, failed, out)
        failed, out = run_case({ eid = "e-3" }, '{"agent": "a", "event_id": null}')
        assert.are.equal(1, failed)
        assert.matches('event_id: got "e-3", want null', out, 1, true)
    end)

    it("does not check the event ID when expect has no event_id key", function()
        for _, ev in ipairs({ {}, { eid = "e-4" }, { eid = 7, int = true }, { eid = true } }) do
            local failed, out = run_case(ev, '{"agent": "a"}')
            assert.are.equal(0, failed, out)
        end
        local failed, out = run_case({ eid = "e-5" }, "{}")
        assert.are.equal(0, failed, out)
    end)

    it("tells a number from a string in the diff", function()
        local failed, out = run_case({ eid = 42, int = true }, '{"agent": "a", "event_id": "42"}')
        assert.are.equal(1, failed)
        assert.matches('event_id: got 42, want "42"', out, 1, true)
        failed, out = run_case({ eid = 42, int = true }, '{"agent": "a", "event_id": 42}')
        assert.are.equal(0, failed, out)
    end)
end)
