-- Dead letters: the events that could not be counted, as the flush stored them in
-- usage_dead_letters (lua/routes/dead_letters.lua declares the routes). Their payloads may carry
-- user text, so these routes need the bearer token whenever one is set (src/auth.c).
local M = {}

-- A page of dead letters, newest first ($1 topic, $2 reason: NULL for any; $3 limit, $4
-- offset), with the first $5 bytes of each payload, how many it has (stored_len) and how many
-- match in all.
local LIST = [[
SELECT id, topic, partition, kafka_offset, reason, detail, payload_size, truncated, created_at,
       payload_hash::text AS payload_hash,
       substring(payload FROM 1 FOR $5::int) AS payload, octet_length(payload) AS stored_len,
       count(*) OVER () AS total
  FROM usage_dead_letters
 WHERE ($1::text IS NULL OR topic = $1) AND ($2::text IS NULL OR reason = $2)
 ORDER BY id DESC
 LIMIT $3 OFFSET $4]]

local SUMMARY = [[
SELECT topic, reason, count(*)::bigint AS count, min(created_at) AS first_at,
       max(created_at) AS last_at, count(*) FILTER (WHERE truncated)::bigint AS truncated
  FROM usage_dead_letters
 GROUP BY topic, reason
 ORDER BY topic COLLATE "C", reason COLLATE "C"]]

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
    local out = {}
    for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local q = {}
        for k = 1, 4 do
            local v = (n >> (6 * (4 - k))) & 63
            q[k] = B64:sub(v + 1, v + 1)
        end
        if b == nil then
            q[3], q[4] = "=", "="
        elseif c == nil then
            q[4] = "="
        end
        out[#out + 1] = table.concat(q)
    end
    return table.concat(out)
end

-- The payload as shown (its first bytes, p; cut: the payload has more): text when they are
-- UTF-8, less the first bytes of a character cut at the end (at most 3), else base64 of them.
-- Returns payload, encoding, shown bytes.
local function show(p, cut)
    for drop = 0, cut and 3 or 0 do
        local s = p:sub(1, #p - drop)
        if utf8.len(s) then
            return s, "utf-8", #s
        end
    end
    return base64(p), "base64", #p
end

function M.list(req)
    local a = req.args
    local rows = db.query(LIST, a.topic, a.reason, a.limit, a.offset, a.payload_max)
    local out = pt.array()
    local total = 0
    for _, r in ipairs(rows) do
        total = r.total
        local item = { id = r.id, topic = r.topic, partition = r.partition,
            offset = r.kafka_offset, reason = r.reason, detail = r.detail,
            payload_size = r.payload_size, payload_truncated_at_ingest = r.truncated,
            created_at = r.created_at, payload_hash = r.payload_hash,
            payload = pt.null, payload_encoding = pt.null,
            payload_shown_bytes = 0 }
        if r.payload ~= pt.null then
            item.payload, item.payload_encoding, item.payload_shown_bytes =
                show(r.payload, r.stored_len > a.payload_max)
        end
        out[#out + 1] = item
    end
    if #rows == 0 and a.offset > 0 then
        -- past the end: the total still says how many there are
        total = db.query([[SELECT count(*)::bigint AS n FROM usage_dead_letters
                            WHERE ($1::text IS NULL OR topic = $1)
                              AND ($2::text IS NULL OR reason = $2)]], a.topic, a.reason)[1].n
    end
    return { total = total, limit = a.limit, offset = a.offset, dead_letters = out }
end

function M.summary()
    local out = pt.array()
    local total = 0
    for _, r in ipairs(db.query(SUMMARY)) do
        total = total + r.count
        out[#out + 1] = { topic = r.topic, reason = r.reason, count = r.count,
            first_at = r.first_at, last_at = r.last_at, truncated = r.truncated }
    end
    return { total = total, by_topic_reason = out }
end

return M
