-- pt.refs (lua/lib/pt/refs.lua), loaded through the production sandbox: the event ID the default
-- rules return for the host's deduplication.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helper.lua")
local cjson = H.cjson
local null = cjson.null

local ok, refs = H.run_sandboxed([[ return require("pt.refs") ]])
assert(ok, refs)

-- event_id(event) and event_id(event, payload of event), which must agree when the test builds
-- the payload itself (the rules pass refs.payload(event)).
local function eid(event)
    return refs.event_id(event, refs.payload(event))
end

describe("refs.event_id", function()
    it("is nil for a non-object event", function()
        for _, ev in ipairs({ "not-json", 42, true, null }) do
            assert.is_nil(refs.event_id(ev, nil))
        end
        assert.is_nil(refs.event_id(nil, nil))
        assert.is_nil(eid({}))
        assert.is_nil(eid({ 1, 2, 3 }))
    end)

    it("reads event_id at the top level, then in payload", function()
        assert.are.equal("e1", eid({ event_id = "e1" }))
        assert.are.equal("e2", eid({ payload = { event_id = "e2" } }))
        assert.are.equal("top", eid({ event_id = "top", payload = { event_id = "inner" } }))
    end)

    it("prefers event_id, even in payload, over a top-level id", function()
        assert.are.equal("e", eid({ event_id = "e", id = "i" }))
        assert.are.equal("inner", eid({ id = "i", payload = { event_id = "inner" } }))
    end)

    it("falls back to id at the top level, then in payload", function()
        assert.are.equal("i1", eid({ id = "i1" }))
        assert.are.equal("i2", eid({ payload = { id = "i2" } }))
        assert.are.equal("top", eid({ id = "top", payload = { id = "inner" } }))
    end)

    it("prefers event_id or id over correlation_id@timestamp", function()
        local ev = { correlation_id = "c", timestamp = "t" }
        assert.are.equal("c@t", eid(ev))
        ev.id = "i"
        assert.are.equal("i", eid(ev))
        ev.event_id = "e"
        assert.are.equal("e", eid(ev))
    end)

    it("builds correlation_id@timestamp with each part from the top level, else payload",
        function()
            assert.are.equal("c@t", eid({ correlation_id = "c", timestamp = "t" }))
            assert.are.equal("c@pt", eid({ correlation_id = "c", payload = { timestamp = "pt" } }))
            assert.are.equal("pc@t", eid({ timestamp = "t", payload = { correlation_id = "pc" } }))
            assert.are.equal("pc@pt",
                eid({ payload = { correlation_id = "pc", timestamp = "pt" } }))
            assert.are.equal("c@t", eid({ correlation_id = "c", timestamp = "t",
                payload = { correlation_id = "pc", timestamp = "pt" } }))
        end)

    it("uses the raw timestamp, never a parsed one, and never created_at", function()
        assert.are.equal("c@2025-11-04T15:02:11.734918",
            eid({ correlation_id = "c", timestamp = "2025-11-04T15:02:11.734918" }))
        assert.are.equal("c@not a time", eid({ correlation_id = "c", timestamp = "not a time" }))
        assert.are.equal("c@1730732531734",
            eid({ correlation_id = "c", timestamp = 1730732531734 }))
        assert.is_nil(eid({ correlation_id = "c", created_at = "2025-01-01T00:00:00Z" }))
    end)

    it("needs both correlation_id and timestamp", function()
        assert.is_nil(eid({ correlation_id = "c" }))
        assert.is_nil(eid({ correlation_id = "c", payload = { created_at = "t" } }))
        assert.is_nil(eid({ timestamp = "t" }))
        assert.is_nil(eid({ timestamp = "t", payload = { correlation_id = "" } }))
        assert.is_nil(eid({ correlation_id = "c", timestamp = false }))
        assert.is_nil(eid({ correlation_id = null, timestamp = "t" }))
    end)

    it("skips empty strings, booleans, null, tables and lists as absent", function()
        for _, v in ipairs({ "", true, false, null, {}, { "x" }, { id = "x" } }) do
            assert.are.equal("next", eid({ event_id = v, id = "next" }))
            assert.are.equal("next", eid({ event_id = v, payload = { event_id = v, id = "next" } }))
            assert.are.equal("c@t", eid({ id = v, correlation_id = "c", timestamp = "t" }))
            assert.is_nil(eid({ correlation_id = v, timestamp = "t" }))
            assert.is_nil(eid({ correlation_id = "c", timestamp = v }))
        end
    end)

    it("writes integers in decimal", function()
        assert.are.equal("42", eid({ event_id = 42 }))
        assert.are.equal("0", eid({ id = 0 }))
        assert.are.equal("-7", eid({ id = -7 }))
        assert.are.equal("9223372036854775807", eid({ id = math.maxinteger }))
        assert.are.equal("-9223372036854775808", eid({ id = math.mininteger }))
        assert.are.equal("c@5", eid({ correlation_id = "c", timestamp = 5 }))
        assert.are.equal("12@t", eid({ correlation_id = 12, timestamp = "t" }))
    end)

    it("writes integral floats under 2^53 in decimal, as lua-cjson decodes every number",
        function()
            assert.are.equal("float", math.type(cjson.decode('{"id": 12}').id))
            assert.are.equal("12", eid(cjson.decode('{"id": 12}')))
            assert.are.equal("42", eid({ event_id = 42.0 }))
            assert.are.equal("1000", eid(cjson.decode('{"id": 1e3}')))
            assert.are.equal("0", eid({ id = -0.0 }))
            assert.are.equal("9007199254740991", eid({ id = 2.0 ^ 53 - 1 }))
            assert.are.equal("-9007199254740991", eid({ id = -(2.0 ^ 53 - 1) }))
            assert.are.equal("9007199254740991",
                eid(cjson.decode('{"event_id": 9007199254740991}')))
        end)

    it("skips fractions, NaN, infinities and floats of 2^53 or more as absent", function()
        -- 9007199254740993 decodes as 2^53: it could be either of two IDs.
        for _, v in ipairs({ 2.5, -0.1, 0 / 0, math.huge, -math.huge, 2.0 ^ 53, -(2.0 ^ 53),
            2.0 ^ 63, 1e308, cjson.decode("[9007199254740993]")[1] }) do
            assert.are.equal("next", eid({ event_id = v, id = "next" }), tostring(v))
            assert.is_nil(eid({ correlation_id = "c", timestamp = v }), tostring(v))
        end
    end)

    it("keeps IDs up to 255 bytes and gives nil above, without cutting or trying the next field",
        function()
            local s255 = string.rep("x", 255)
            local s256 = string.rep("x", 256)
            assert.are.equal(s255, eid({ event_id = s255 }))
            assert.is_nil(eid({ event_id = s256 }))
            assert.is_nil(eid({ event_id = s256, id = "short" }))
            assert.is_nil(eid({ id = s256, correlation_id = "c", timestamp = "t" }))
            assert.is_nil(eid({ payload = { event_id = s256, id = "short" } }))
            -- Multi-byte characters count in bytes.
            assert.is_nil(eid({ id = string.rep("é", 128) }))
            assert.are.equal(string.rep("é", 127), eid({ id = string.rep("é", 127) }))
        end)

    it("limits correlation_id@timestamp to 255 bytes as a whole", function()
        local c = string.rep("c", 200)
        local t = string.rep("t", 54)
        assert.are.equal(c .. "@" .. t, eid({ correlation_id = c, timestamp = t }))
        assert.is_nil(eid({ correlation_id = c, timestamp = t .. "t" }))
    end)

    it("ignores a payload that is not a table", function()
        assert.is_nil(refs.event_id({ correlation_id = "c" }, "t"))
        assert.is_nil(refs.event_id({ correlation_id = "c" }, null))
        assert.are.equal("i", refs.event_id({ id = "i" }, 42))
        assert.is_nil(eid({ payload = "not an object" }))
        assert.is_nil(eid({ payload = { "event_id", "id" } }))
    end)

    it("does not modify the event", function()
        local ev = cjson.decode('{"event_id": "", "id": 12, "correlation_id": "c",'
            .. '"timestamp": "t", "payload": {"event_id": 2.5, "id": "p"}}')
        local before = cjson.encode(ev)
        assert.are.equal("12", eid(ev))
        assert.are.equal(before, cjson.encode(ev))
    end)
end)
