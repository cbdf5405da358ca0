-- The router's answer cache (lua/pt/router.lua): answers reused until new data is committed,
-- at most 1024 per route, and on overflow the most expensive ones are kept.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helper.lua")
local cjson = H.cjson

-- One cached GET route. Its handler counts its calls per key and "takes" as many ms as the key
-- says (cost-<ms>-<n>) on a fake clock that the router reads through pt.now. Route files see
-- only pt and db (the sandbox), so the counters ride on pt.
local ROUTE = [[
return { {
    method = "GET", path = "/c/{key}", cache = true,
    handler = function(req)
        local key = req.params.key
        pt.test.calls[key] = (pt.test.calls[key] or 0) + 1
        pt.test.t = pt.test.t + tonumber(key:match("^cost%-(%d+)")) / 1000
        return { key = key, n = pt.test.calls[key] }
    end,
} }]]

local function new_router()
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(ROUTE)
    f:close()
    local test = { t = 1000.0, version = 1, written = 1, calls = {}, early = {} }
    local pt = {
        null = cjson.null,
        now = function() return test.t end,
        data_version = function() return test.version, test.written end,
        reply_early = function(status, body) test.early[#test.early + 1] = { status, body } end,
        json = cjson.encode,
        log = function() end,
        traceback = debug.traceback,
        test = test,
    }
    local chunk = assert(loadfile(H.root .. "/lua/pt/router.lua", "t"))
    local dispatch = chunk(H.sandbox, pt, {}, { { path, "@cache_route.lua" } })
    os.remove(path)
    return dispatch, test
end

local function total_calls(test)
    local n = 0
    for _, c in pairs(test.calls) do
        n = n + c
    end
    return n
end

local id = 0
local function get(dispatch, key)
    id = id + 1
    local status, body = dispatch({ method = "GET", raw_path = "/c/" .. key,
        segments = { "c", key }, query = {}, headers = {}, body = "", id = id })
    assert.are.equal(200, status)
    assert.are.equal(key, cjson.decode(body).key)
end

-- A request's answer: the one sent early (from the cache) if any, else the route's; and the n
-- of the route's own answer (how many times it had computed that key).
local function ask(dispatch, test, key)
    local before = #test.early
    id = id + 1
    local status, body = dispatch({ method = "GET", raw_path = "/c/" .. key,
        segments = { "c", key }, query = {}, headers = {}, body = "", id = id })
    assert.are.equal(200, status)
    local computed = cjson.decode(body).n
    if #test.early > before then
        assert.are.equal(before + 1, #test.early)
        assert.are.equal(200, test.early[#test.early][1])
        return cjson.decode(test.early[#test.early][2]).n, computed
    end
    return computed, computed
end

describe("router answer cache", function()
    it("answers at once with the previous answer after a Kafka flush, and refreshes it", function()
        local dispatch, test = new_router()
        assert.are.same({ 1, 1 }, { ask(dispatch, test, "cost-1-a") })
        test.version = 2 -- a Kafka flush: the client sent nothing it would read back
        -- the request gets answer 1 at once, then computes answer 2 for those after it
        assert.are.same({ 1, 2 }, { ask(dispatch, test, "cost-1-a") })
        assert.are.same({ 2, 2 }, { ask(dispatch, test, "cost-1-a") })
        assert.are.equal(2, test.calls["cost-1-a"])
    end)

    it("never answers early after a write a client may read back", function()
        local dispatch, test = new_router()
        ask(dispatch, test, "cost-1-a")
        test.version, test.written = 2, 2 -- e.g. HTTP-ingested events answered "stored"
        assert.are.same({ 2, 2 }, { ask(dispatch, test, "cost-1-a") })
        assert.are.equal(0, #test.early)
    end)

    it("never answers early with an answer older than a second", function()
        local dispatch, test = new_router()
        ask(dispatch, test, "cost-1-a")
        test.version = 2
        test.t = test.t + 1.01
        assert.are.same({ 2, 2 }, { ask(dispatch, test, "cost-1-a") })
        -- nor when only the second passed (other engines' writes): the TTL's promise
        test.t = test.t + 1.01
        assert.are.same({ 3, 3 }, { ask(dispatch, test, "cost-1-a") })
        assert.are.equal(0, #test.early)
    end)

    it("answers early with an expensive answer younger than six times its cost", function()
        local dispatch, test = new_router()
        ask(dispatch, test, "cost-400-a") -- computed from t = 1000.0 to 1000.4
        test.version = 2
        test.t = test.t + 1.5 -- reused as it is (4 x its cost after it was done)
        assert.are.same({ 1, 1 }, { ask(dispatch, test, "cost-400-a") })
        test.t = test.t + 0.2 -- 2.1 s after its snapshot: under 6 x 0.4 s
        assert.are.same({ 1, 2 }, { ask(dispatch, test, "cost-400-a") })
        test.version = 3
        test.t = test.t + 2.2 -- 2.6 s after the second's snapshot: over 6 x 0.4 s
        assert.are.same({ 3, 3 }, { ask(dispatch, test, "cost-400-a") })
        assert.are.equal(1, #test.early)
    end)

    it("reuses an answer until the data version changes", function()
        local dispatch, test = new_router()
        get(dispatch, "cost-1-a")
        get(dispatch, "cost-1-a")
        assert.are.equal(1, test.calls["cost-1-a"])
        test.version = 2
        get(dispatch, "cost-1-a")
        assert.are.equal(2, test.calls["cost-1-a"])
    end)

    it("recomputes after a second without new data (other engines may have written)", function()
        local dispatch, test = new_router()
        get(dispatch, "cost-1-a")
        test.t = test.t + 0.5
        get(dispatch, "cost-1-a")
        assert.are.equal(1, test.calls["cost-1-a"])
        test.t = test.t + 0.6
        get(dispatch, "cost-1-a")
        assert.are.equal(2, test.calls["cost-1-a"])
    end)

    it("keeps the most expensive answers when a route is full, drops the cheap ones", function()
        local dispatch, test = new_router()
        -- 1024 answers: 100 that took 50 ms, 924 that took 1 ms. The fake clock is set back
        -- after each request, so that no answer expires during the test.
        local keys = {}
        for i = 1, 1024 do
            keys[i] = (i <= 100 and "cost-50-" or "cost-1-") .. i
            local t = test.t
            get(dispatch, keys[i])
            test.t = t
        end
        -- the 1025th answer overflows the route
        local t = test.t
        get(dispatch, "cost-1-new")
        test.t = t
        for i = 1, 1024 do
            get(dispatch, keys[i])
            test.t = t
        end
        for i = 1, 100 do
            assert.are.equal(1, test.calls[keys[i]], keys[i] .. " was kept")
        end
        -- of the cheap ones at most 128 - 100 stayed (ties in cost are kept in any order)
        local recomputed = 0
        for i = 101, 1024 do
            recomputed = recomputed + (test.calls[keys[i]] - 1)
        end
        assert.is_true(recomputed >= 924 - 28, recomputed .. " cheap answers recomputed")
    end)

    it("never holds more than 1024 answers of a route", function()
        local dispatch, test = new_router()
        local t = test.t
        for i = 1, 5000 do
            get(dispatch, "cost-1-" .. i)
            test.t = t
        end
        -- after 5000 keys, asking again for all of them computes all but at most 1024
        local before = total_calls(test)
        for i = 1, 5000 do
            get(dispatch, "cost-1-" .. i)
            test.t = t
        end
        assert.is_true(total_calls(test) - before >= 5000 - 1024)
    end)
end)
