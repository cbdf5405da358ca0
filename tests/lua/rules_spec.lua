-- The default extraction rules (rules/*.lua), run in the production sandbox: every fixture case
-- of rules/tests/<topic>.json, the sandbox's refusals, and random JSON shapes that must never
-- make a rule raise or break the return contract.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helper.lua")
local cjson = H.cjson
local null = cjson.null

-- Sorted distinct copy of a sequence of strings.
local function distinct_sorted(list)
    local seen, out = {}, {}
    for i = 1, #list do
        local v = list[i]
        if not seen[v] then
            seen[v] = true
            out[#out + 1] = v
        end
    end
    table.sort(out)
    return out
end

-- Asserts the return contract: agent a string, patterns a sequence of strings, time a string
-- or nil, note a string or nil, event_id nil or a string of 1..255 bytes.
local function check_contract(agent, patterns, time, note, event_id)
    -- Plain assert: luassert's matchers are too slow for the random-shape loop.
    assert(type(agent) == "string", "agent must be a string")
    assert(type(patterns) == "table", "patterns must be a table")
    local n = #patterns
    for k, v in pairs(patterns) do
        assert(math.type(k) == "integer" and k >= 1 and k <= n, "patterns is not a sequence")
        assert(type(v) == "string", "a pattern must be a string")
    end
    assert(time == nil or type(time) == "string", "time must be a string or nil")
    assert(note == nil or type(note) == "string", "note must be a string or nil")
    assert(event_id == nil or (type(event_id) == "string" and #event_id >= 1 and #event_id <= 255),
        "event_id must be nil or a string of 1..255 bytes")
end

local function opt(v)
    if v == null then
        return nil
    end
    return v
end

local function default_meta(topic)
    return { topic = topic, partition = 0, offset = 0, headers = {}, dedupe = true }
end

-- Per topic: an event with repeated references in each of its locations, and the exact
-- sequence the rule returns (the reference's field order, then list order, top level first).
local ORDER = {
    ["agent-manifest-injections"] = {
        '{"patterns": ["a", "b", "a"], "manifest": {"patterns": ["x"]}, "pattern_ids": ["c", "a"],'
            .. '"patterns_discovered": ["e"],'
            .. '"full_manifest_snapshot": {"patterns": {"available": [{"name": "f"}]}},'
            .. '"payload": {"patterns": {"available": ["d"]}, "pattern_ids": "a"}}',
        { "a", "b", "a", "e", "c", "a", "f", "d", "a" },
    },
    ["agent-actions"] = {
        '{"patterns": ["a", "b", "a"], "pattern_ids": ["c", "a"], "metadata": {"patterns": ["a"]},'
            .. '"payload": {"pattern_ids": "d", "patterns": [{"id": "e"}]}}',
        { "a", "b", "a", "c", "a", "a", "e", "d" },
    },
    ["agent-routing-decisions"] = {
        '{"patterns_used": ["a", "b", "a"], "confidence_components": {"patterns": ["c", "a"]},'
            .. '"context": {"patterns": ["a"]}, "payload": {"patterns_used": ["d"]}}',
        { "a", "b", "a", "c", "a", "a", "d" },
    },
}

describe("default rules", function()
    for _, topic in ipairs(H.topics) do
        describe(topic, function()
            local rule = H.load_rule(topic)
            local cases = H.fixtures(topic)

            it("has at least 15 fixture cases", function()
                assert.is_true(#cases >= 15)
            end)

            for _, c in ipairs(cases) do
                it("fixture: " .. c.name, function()
                    local meta = c.meta
                    if meta == nil or meta == null then
                        meta = default_meta(topic)
                    elseif meta.dedupe == nil then
                        meta = setmetatable({ dedupe = true }, { __index = meta })
                    end
                    local agent, patterns, time, note, event_id = rule(c.event, meta)
                    check_contract(agent, patterns, time, note, event_id)
                    local e = c.expect
                    assert.are.equal(e.agent, agent)
                    assert.are.same(distinct_sorted(e.patterns), distinct_sorted(patterns))
                    assert.are.equal(opt(e.time), time)
                    assert.are.equal(opt(e.note), note)
                    if e.event_id ~= nil then
                        assert.are.equal(opt(e.event_id), event_id)
                    end
                end)
            end

            it("returns every reference in field and list order, repeats included", function()
                local o = ORDER[topic]
                local _, patterns = rule(cjson.decode(o[1]), default_meta(topic))
                assert.are.same(o[2], patterns)
            end)

            it("accepts a non-object event", function()
                for _, ev in ipairs({ "not-json", 42, true, null, {}, { 1, 2, 3 } }) do
                    local agent, patterns, time, note, event_id = rule(ev, default_meta(topic))
                    check_contract(agent, patterns, time, note, event_id)
                    assert.are.equal("unknown", agent)
                    assert.are.same({}, patterns)
                    assert.is_nil(time)
                    assert.is_nil(note)
                    assert.is_nil(event_id)
                end
            end)

            it("covers event IDs in its fixtures: some cases expect one, some expect none",
                function()
                    local some, none = 0, 0
                    for _, c in ipairs(cases) do
                        if c.expect.event_id == null then
                            none = none + 1
                        elseif c.expect.event_id ~= nil then
                            some = some + 1
                        end
                    end
                    assert.is_true(some >= 3 and none >= 2)
                end)

            it("returns refs.event_id of the event and its payload as the fifth value", function()
                local ev = cjson.decode('{"correlation_id": "c", "timestamp": 7,'
                    .. '"payload": {"id": "p-id", "agent_name": "a"}}')
                local r = table.pack(rule(ev, default_meta(topic)))
                assert.are.equal(5, r.n)
                assert.are.equal("p-id", r[5])
                ev.payload = nil
                assert.are.equal("c@7", select(5, rule(ev, default_meta(topic))))
                -- a topic that is not deduplicated: no ID is looked for
                local meta = default_meta(topic)
                meta.dedupe = false
                local r2 = table.pack(rule(ev, meta))
                local r1 = table.pack(rule(ev, default_meta(topic)))
                assert.is_nil(r2[5])
                assert.are.equal(r1[1], r2[1])
                assert.are.same(r1[2], r2[2])
            end)

            it("does not modify the event", function()
                for _, c in ipairs(cases) do
                    local before = cjson.encode(c.event)
                    rule(c.event, default_meta(topic))
                    assert.are.equal(before, cjson.encode(c.event))
                end
            end)
        end)
    end

    it("only agent-manifest-injections reports count_without_list", function()
        local ev = { agent_name = "a", patterns_count = 3 }
        local _, _, _, note = H.load_rule("agent-actions")(ev, default_meta("agent-actions"))
        assert.is_nil(note)
        _, _, _, note = H.load_rule("agent-routing-decisions")(ev, default_meta("x"))
        assert.is_nil(note)
    end)
end)

describe("sandbox", function()
    it("shares one cjson.null lightuserdata across cjson.new() instances", function()
        local ok, same = H.run_sandboxed("return cjson.null")
        assert.is_true(ok)
        assert.are.equal(null, same)
        assert.are.equal(null, cjson.new().null)
        assert.are.equal(null, cjson.decode("[null]")[1])
    end)

    it("gives rules no io, os.execute, dofile, loadfile, package, debug, collectgarbage",
        function()
            local ok, res = H.run_sandboxed([[
                return io == nil and os.execute == nil and os.exit == nil and os.getenv == nil
                    and os.remove == nil and dofile == nil and loadfile == nil
                    and package == nil and debug == nil and collectgarbage == nil
                    and print == nil
            ]])
            assert.is_true(ok)
            assert.is_true(res)
        end)

    it("refuses binary chunks", function()
        local ok, res, err = H.run_sandboxed([[
            local bin = string.dump(function() return 1 end)
            local f1, e1 = load(bin, "bin", "b")
            local f2, e2 = load(bin)
            local f3, e3 = load(bin, "bin", "bt")
            return f1 == nil and f2 == nil and f3 == nil, tostring(e1)
        ]])
        assert.is_true(ok)
        assert.is_true(res)
        assert.is_string(err)
    end)

    it("loads text chunks in the sandbox, not the host's globals", function()
        local ok, res = H.run_sandboxed([[
            local f = assert(load("return io, dofile, cjson ~= nil"))
            local a, b, c = f()
            return a == nil and b == nil and c
        ]])
        assert.is_true(ok)
        assert.is_true(res)
    end)

    it("requires only modules under lua/lib", function()
        local ok, res = H.run_sandboxed([[ return require("pt.refs").ref_id({id = "x"}) ]])
        assert.is_true(ok)
        assert.are.equal("x", res)
        for _, name in ipairs({ "io", "os", "cjson", "pt.nope", "../sandbox", "pt/../../x",
            "pt..refs", ".pt", "pt.", "/etc/passwd", "", 42 }) do
            local src = "return require(" .. (type(name) == "string" and string.format("%q", name)
                or tostring(name)) .. ")"
            local rok, rerr = H.run_sandboxed(src)
            assert.is_false(rok, "require(" .. tostring(name) .. ") must fail")
            assert.is_string(rerr)
        end
    end)

    it("caches a library once per generation", function()
        local ok, a = H.run_sandboxed([[ return require("pt.refs") ]])
        local ok2, b = H.run_sandboxed([[ return require("pt.refs") ]])
        assert.is_true(ok and ok2)
        assert.are.equal(a, b)
    end)

    it("hides the string metatable", function()
        local ok, res = H.run_sandboxed([[ return getmetatable("") ]])
        assert.is_true(ok)
        assert.is_false(res)
    end)

    it("refuses finalizers (they would run outside the instruction budget)", function()
        for _, src in ipairs({
            "setmetatable({}, { __gc = function() while true do end end })",
            "local t = setmetatable({}, { __gc = true }); getmetatable(t).__gc = print",
        }) do
            local ok, err = H.run_sandboxed(src)
            assert.is_false(ok, src)
            assert.matches("__gc", tostring(err))
        end
        local ok, res = H.run_sandboxed([[
            local mt = { __index = function() return 1 end }
            local t = setmetatable({}, mt)
            mt.__gc = function() end -- too late to mark t: never called
            return getmetatable(t) == mt and t.x
        ]])
        assert.is_true(ok)
        assert.are.equal(1, res)
    end)

    it("gives each rule its own globals", function()
        local ok = H.run_sandboxed([[ leaked_global = 1; string.upper = nil ]])
        assert.is_true(ok)
        local ok2, res = H.run_sandboxed([[ return leaked_global == nil and string.upper ~= nil ]])
        assert.is_true(ok2)
        assert.is_true(res)
        assert.is_function(string.upper)
    end)

    it("reports a rule file that does not return a function", function()
        local fn, err = H.sandbox.load_rule("lua/lib/pt/refs.lua", "x.lua", {})
        assert.is_nil(fn)
        assert.matches("must return a function", err)
    end)
end)

-- Random JSON-shaped values: what lua-cjson can hand a rule. Keys are drawn mostly from the
-- names the rules look at, so random shapes reach every code path.
describe("random shapes", function()
    local KEYS = {
        "agent_name", "selected_agent", "patterns", "manifest", "patterns_discovered",
        "pattern_ids", "full_manifest_snapshot", "available", "patterns_count", "pattern_count",
        "metadata", "patterns_used", "confidence_components", "context", "payload", "timestamp",
        "created_at", "pattern_id", "id", "name", "action_details", "pattern", "glob_pattern",
        "confidence_scores", "total_count", "correlation_id", "1", "", "x", "event_id",
    }
    local STRINGS = { "", "p", "unknown", "2025-01-01T00:00:00Z", "3f2b8c1e-4d5a-4e6f-9a7b",
        "\0", "ünïcødé", string.rep("a", 300) }

    local gen
    local function scalar()
        local r = math.random(8)
        if r == 1 then
            return null
        elseif r == 2 then
            return math.random(2) == 1
        elseif r == 3 then
            return math.random(-5, 5)
        elseif r == 4 then
            return (math.random() - 0.5) * 1e12
        elseif r == 5 then
            return ({ 0.0, -0.0, math.huge, -math.huge, 2 ^ 63, 1e308 })[math.random(6)]
        else
            return STRINGS[math.random(#STRINGS)]
        end
    end

    -- Containers get rarer with depth so a case stays small; depth never exceeds 6.
    function gen(depth)
        local r = math.random(10)
        if depth >= 6 or r <= 3 + depth then
            return scalar()
        elseif r <= 7 + depth // 2 then
            local t = {}
            for i = 1, math.random(0, 5) do
                t[i] = gen(depth + 1)
            end
            return t
        else
            local t = {}
            for _ = 1, math.random(0, 6) do
                t[KEYS[math.random(#KEYS)]] = gen(depth + 1)
            end
            return t
        end
    end

    local function event()
        if math.random(20) == 1 then
            return gen(5)
        end
        local t = {}
        for _ = 1, math.random(0, 10) do
            t[KEYS[math.random(#KEYS)]] = gen(1)
        end
        return t
    end

    for _, topic in ipairs(H.topics) do
        it(topic .. " never raises and keeps its return contract", function()
            local rule = H.load_rule(topic)
            math.randomseed(20251104)
            local meta = default_meta(topic)
            for i = 1, 3000 do
                local ev = event()
                local ok, agent, patterns, time, note, event_id = pcall(rule, ev, meta)
                if not ok then
                    error("case " .. i .. " raised: " .. tostring(agent))
                end
                check_contract(agent, patterns, time, note, event_id)
                assert(agent ~= "", "agent must not be empty")
                -- The same shape after a JSON round trip (what the host actually decodes).
                local okenc, text = pcall(cjson.encode, ev)
                if okenc then
                    local okdec, decoded = pcall(cjson.decode, text)
                    if okdec then
                        ok, agent, patterns, time, note, event_id = pcall(rule, decoded, meta)
                        if not ok then
                            error("case " .. i .. " (decoded) raised: " .. tostring(agent))
                        end
                        check_contract(agent, patterns, time, note, event_id)
                    end
                end
            end
        end)
    end
end)
