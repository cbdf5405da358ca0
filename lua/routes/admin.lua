-- Administration: reload config, rules and routes now (as SIGHUP or a changed file would), and
-- answer with the result once it is known.
return {
    {
        method = "POST", path = "/admin/reload", tags = { "operations" },
        summary = "Reload configuration, rules and routes; answers with the result",
        description = "A version that fails to load (syntax error, error while loading, a rule " ..
            "that does not return a function) leaves the running one in place; the answer is " ..
            "409 with the error. Options that cannot change while running are named in the " ..
            "message.",
        responses = {
            ["200"] = { description = "Reloaded", schema = { type = "object", properties = {
                ok = { type = "boolean" }, message = { type = "string" },
                fingerprint = { type = "string" } } } },
            ["409"] = "The new version failed to load; the running one stays",
        },
        handler = function()
            local r = pt.reload()
            return r.ok and 200 or 409, r
        end,
    },
}
