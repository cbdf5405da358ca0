-- The sandbox in which every user-supplied Lua file runs: extraction rules, HTTP routes and the
-- configuration file. This file itself is trusted: the C host loads it (and busted loads it in
-- tests/lua, so rules are tested in the same sandbox as in production).
--
-- Called as a chunk with:
--   readfile(path) -> string | nil, err   (the only file access; user code never gets it)
--   root           -> the project directory; `require` resolves under root/lua/lib only
--   cjson          -> the lua-cjson module; each environment gets its own cjson.new() instance
-- Returns the module table M below.
local readfile, root, cjson = ...
assert(type(readfile) == "function", "sandbox: readfile missing")
root = root or "."

local M = {}

-- Base functions a rule may use. Absent on purpose: dofile, loadfile, require (replaced),
-- collectgarbage (a rule could stall the host with a full collection), and binary load.
local BASE = {
    "assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget", "rawlen",
    "rawset", "select", "tonumber", "tostring", "type", "xpcall", "setmetatable",
    "getmetatable",
}
local LIBS = { "string", "table", "math", "utf8" }
local OS = { "time", "clock", "date", "difftime" }

local function copy(t)
    local c = {}
    for k, v in pairs(t) do
        c[k] = v
    end
    return c
end

-- The string metatable is shared by every string in the state; hide it so sandboxed code
-- cannot replace string methods for the host or for other rules.
do
    local mt = getmetatable("")
    if mt and mt.__metatable == nil then
        mt.__metatable = false
    end
end

-- load() for sandboxed code: text chunks only, and the environment defaults to the caller's
-- sandbox rather than the host's globals.
local function safe_load(env)
    return function(chunk, name, mode, e)
        if mode ~= nil and mode ~= "t" then
            return nil, "load: only text chunks are allowed"
        end
        return load(chunk, name, "t", e or env)
    end
end

local function valid_module_name(name)
    return type(name) == "string" and name:match("^[%a_][%w_]*$") ~= nil
        or (type(name) == "string" and name:match("^[%a_][%w_]*%.[%a_][%w_%.]*$") ~= nil
            and not name:find("%.%.") and not name:find("%.$"))
end

-- setmetatable for sandboxed code, without finalizers: a __gc function runs whenever the
-- collector reaches its object (during an allocation made from C, or when the state is closed
-- at a reload), outside any instruction budget, so a looping one would stop the engine. Any
-- __gc field is refused: Lua marks a table for finalization only when its metatable is set
-- with that field present, so one added later is never called.
local raw_setmetatable = setmetatable
local function safe_setmetatable(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("setmetatable: __gc (finalizers) is not allowed in the sandbox", 2)
    end
    return raw_setmetatable(t, mt)
end

-- A fresh environment. `modules` is the cache shared by the environments of one generation,
-- so a library under lua/lib is loaded once per generation, not once per rule.
function M.env(modules, extra)
    local env = {}
    for _, k in ipairs(BASE) do
        env[k] = _G[k]
    end
    env.setmetatable = safe_setmetatable
    for _, lib in ipairs(LIBS) do
        env[lib] = copy(_G[lib])
    end
    env.os = {}
    for _, k in ipairs(OS) do
        env.os[k] = os[k]
    end
    if cjson then
        env.cjson = cjson.new()
        env.cjson.decode_max_depth(128)
        env.cjson.encode_max_depth(128)
    end
    env.load = safe_load(env)
    env._G = env
    env._VERSION = _VERSION
    modules = modules or {}
    env.require = function(name)
        return M.require(name, modules, extra)
    end
    if extra then
        for k, v in pairs(extra) do
            env[k] = v
        end
    end
    return env
end

-- require() for sandboxed code: only modules under root/lua/lib, by dotted name, in text mode,
-- each in its own environment.
function M.require(name, modules, extra)
    if not valid_module_name(name) then
        error("require: invalid module name " .. tostring(name), 2)
    end
    local cached = modules[name]
    if cached ~= nil then
        return cached
    end
    local rel = "lua/lib/" .. name:gsub("%.", "/") .. ".lua"
    local src, err = readfile(root .. "/" .. rel)
    if not src then
        error("require: module '" .. name .. "' not found under lua/lib (" .. tostring(err) .. ")",
            2)
    end
    local fn, lerr = load(src, "@" .. rel, "t", M.env(modules, extra))
    if not fn then
        error("require: " .. lerr, 2)
    end
    local value = fn(name)
    if value == nil then
        value = true
    end
    modules[name] = value
    return value
end

-- Load a user file as a chunk in a fresh environment. Returns the chunk's first result, or
-- nil and a message. `chunkname` is how the file is named in tracebacks (e.g.
-- "rules/agent-actions.lua").
function M.load_file(path, chunkname, modules, extra)
    local src, err = readfile(path)
    if not src then
        return nil, "cannot read " .. path .. ": " .. tostring(err)
    end
    local env = M.env(modules, extra)
    local fn, lerr = load(src, "@" .. (chunkname or path), "t", env)
    if not fn then
        return nil, lerr
    end
    local ok, res = pcall(fn)
    if not ok then
        return nil, tostring(res)
    end
    return res, env
end

-- Load an extraction rule: the file must return a function(event, meta).
function M.load_rule(path, chunkname, modules, extra)
    local res, env = M.load_file(path, chunkname, modules, extra)
    if res == nil then
        if type(env) == "string" then
            return nil, env
        end
        return nil, (chunkname or path) ..
            ": the file returned nothing (a rule must return a function)"
    end
    if type(res) ~= "function" then
        return nil, (chunkname or path) .. ": a rule must return a function, got " .. type(res)
    end
    return res
end

return M
