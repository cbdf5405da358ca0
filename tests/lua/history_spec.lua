-- pt.history's date formatting (arithmetic, not os.date) against os.date over the whole range
-- the API accepts, years 1 to 9999.
package.path = (os.getenv("PT_ROOT") or ".") .. "/lua/lib/?.lua;" .. package.path
_G.pt = _G.pt or {} -- the module reads pt only inside its functions; iso and date never do
local H = require("pt.history")

local function reference(secs)
    local t = os.date("!*t", secs)
    return string.format("%04d-%02d-%02dT%02d:%02d:%02dZ", t.year, t.month, t.day, t.hour,
        t.min, t.sec), string.format("%04d-%02d-%02d", t.year, t.month, t.day)
end

describe("pt.history iso and date", function()
    it("match os.date at the edges and around leap days", function()
        local cases = { H.TIME_MIN, H.TIME_END - 1, 0, -1, 86399, 86400, 951782400, 951868799,
            951868800, 4107542400, -2203891200, 1709164800, 1709251199 }
        for _, secs in ipairs(cases) do
            local want_iso, want_date = reference(secs)
            assert.are.equal(want_iso, H.iso(secs), "iso(" .. secs .. ")")
            assert.are.equal(want_date, H.date(secs), "date(" .. secs .. ")")
        end
    end)
    it("match os.date for 20,000 random times in years 1 to 9999", function()
        math.randomseed(42)
        for _ = 1, 20000 do
            local secs = math.random(H.TIME_MIN, H.TIME_END - 1)
            local want_iso, want_date = reference(secs)
            assert.are.equal(want_iso, H.iso(secs), "iso(" .. secs .. ")")
            assert.are.equal(want_date, H.date(secs), "date(" .. secs .. ")")
        end
    end)
end)
