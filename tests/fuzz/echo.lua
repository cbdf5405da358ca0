-- A rule for fuzzing only (tests/fuzz/fuzz_ingest.c): it returns what the event says, so the
-- checks on a rule's results (src/rules.c) and on pattern IDs (src/ingest.c) meet every type
-- and byte sequence an event can carry. Fields: a = agent, p = patterns, t = time, n = note;
-- {"bytes": [n, ...]} stands for the string of those bytes; "$key" for meta.key and
-- "$headers" (as p) for the list of meta.headers' values.
local function value(v, meta)
    if v == "$key" then
        return meta.key
    end
    if type(v) == "table" and type(v.bytes) == "table" then
        local out = {}
        for i, b in ipairs(v.bytes) do
            out[i] = string.char(math.tointeger(b) % 256)
        end
        return table.concat(out)
    end
    return v
end

return function(event, meta)
    local p = event.p
    if p == "$headers" then
        p = {}
        for _, v in pairs(meta.headers) do
            p[#p + 1] = v
        end
    elseif type(p) == "table" then
        local list = {}
        for i = 1, #p do
            list[i] = value(p[i], meta)
        end
        p = list
    end
    return value(event.a, meta), p, value(event.t, meta), value(event.n, meta)
end
