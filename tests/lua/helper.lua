-- Test helper for tests/lua: loads lua/pt/sandbox.lua the way the C host does, so rules and
-- routes are exercised in the production sandbox. The project root is $PT_ROOT, else the
-- current directory. Returns a table:
--   root, cjson, sandbox, modules
--   load_rule(topic)       -> the rule function of rules/<topic>.lua (raises on load errors)
--   fixtures(topic)        -> the decoded cases of rules/tests/<topic>.json
--   run_sandboxed(src)     -> pcall results of running `src` in a fresh sandbox environment
local cjson = require("cjson")

local root = os.getenv("PT_ROOT")
if root == nil or root == "" then
    root = "."
end
if root:sub(1, 1) ~= "/" then
    local pwd = os.getenv("PWD")
    if pwd ~= nil and pwd ~= "" then
        root = root == "." and pwd or (pwd .. "/" .. root)
    end
end

-- The only file access the sandbox gets. Relative paths (rules/x.lua) are under the root.
local function readfile(path)
    if path:sub(1, 1) ~= "/" then
        path = root .. "/" .. path
    end
    local f, err = io.open(path, "rb")
    if not f then
        return nil, err
    end
    local s = f:read("a")
    f:close()
    return s
end

local sandbox = assert(loadfile(root .. "/lua/pt/sandbox.lua", "t"))(readfile, root, cjson)

local H = { root = root, cjson = cjson, sandbox = sandbox, readfile = readfile }

-- One module cache per "generation", as in the host.
H.modules = {}

function H.load_rule(topic)
    local fn, err = sandbox.load_rule("rules/" .. topic .. ".lua", "rules/" .. topic .. ".lua",
        H.modules)
    if not fn then
        error(err, 2)
    end
    return fn
end

function H.fixtures(topic)
    local src = assert(readfile("rules/tests/" .. topic .. ".json"))
    return cjson.decode(src)
end

function H.run_sandboxed(src)
    local env = sandbox.env(H.modules)
    local fn, err = load(src, "=sandboxed", "t", env)
    if not fn then
        return false, err
    end
    return pcall(fn)
end

H.topics = { "agent-manifest-injections", "agent-actions", "agent-routing-decisions" }

return H
