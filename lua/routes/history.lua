-- History analytics over the usage buckets: trends, time series, heatmaps, co-occurrence and
-- lifecycle health. Every count comes from tables the flush keeps exact in the same transaction
-- as the usage counts: pattern_usage_hourly (+ pattern_usage_daily, where hours older than
-- retention_hourly_days are rolled up), the partner lists (pattern_lists, agent_lists) and
-- pattern_lineage_nodes. Agents have their own file (agents.lua).
local stats = require("pt.stats")
local H = require("pt.history")

local null = pt.null

local NOT_FOUND = { description = "Unknown pattern",
    schema = { type = "object", properties = { detail = { type = "string" } } } }
local TIME = { type = "string", format = "date-time" }
local TIME_OR_NULL = { type = "string", format = "date-time", nullable = true }
local TREND = { type = "string",
    enum = pt.array({ "increasing", "decreasing", "stable", "insufficient_data" }) }

local function obj(props)
    return { type = "object", properties = props }
end

local function list(item)
    return { type = "array", items = item }
end

-- ---------------------------------------------------------------- trends

-- The all-patterns totals of the two windows (is_total), then the patterns whose trend is
-- `$2` (increasing or decreasing), fastest first, at most $3. $1 is window_days. The filter and
-- the order use stats.trend's percentage computed the same way in SQL (stats.trend_pct_sql):
-- ranking 100,000 patterns in Lua would cost the Lua state's memory.
local TRENDS = ([[
WITH t AS (
    SELECT x.pattern_id, grouping(x.pattern_id) = 1 AS is_total, %s
      FROM %s CROSS JOIN LATERAL (%s) x
     GROUP BY GROUPING SETS ((x.pattern_id), ())),
c AS (
    SELECT t.*, %s AS pct FROM t WHERE NOT t.is_total AND t.previous > 0),
r AS (
    SELECT pattern_id, is_total, recent, previous, from_daily, 0::bigint AS rank
      FROM t WHERE is_total
    UNION ALL
    (SELECT pattern_id, is_total, recent, previous, from_daily,
            row_number() OVER (ORDER BY abs(pct) DESC,
                                        CASE WHEN $2 = 'increasing' THEN 1 ELSE -1 END
                                            * (coalesce(recent, 0) - previous) DESC,
                                        pattern_id COLLATE "C")
       FROM c
      WHERE CASE WHEN $2 = 'increasing' THEN pct > 10 ELSE pct < -10 END
      ORDER BY 6 LIMIT $3))
SELECT w.t0, w.t1, w.t2, r.pattern_id, r.is_total, r.recent, r.previous, r.from_daily,
       coalesce(n.pattern_name, r.pattern_id) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type
  FROM %s CROSS JOIN r
  LEFT JOIN pattern_lineage_nodes n ON n.pattern_id = r.pattern_id
 ORDER BY r.rank]]):format(
    stats.WINDOW_SUMS, stats.WINDOWS, stats.window_usage("true"),
    stats.trend_pct_sql("coalesce(t.recent, 0)", "t.previous"), stats.WINDOWS)

local TREND_ITEM = obj({ pattern_id = { type = "string" }, pattern_name = { type = "string" },
    pattern_type = { type = "string" }, recent_usage = { type = "integer" },
    previous_usage = { type = "integer" }, trend = TREND, trend_percentage = { type = "number" } })

local function trends(req)
    local rows = db.query_heavy(TRENDS, req.args.window_days, req.args.direction, req.args.limit)
    local out = {
        window_days = req.args.window_days, direction = req.args.direction,
        patterns = pt.array(),
    }
    local recent, previous = 0, 0
    for _, r in ipairs(rows) do
        out.window_end, out.recent_window_start, out.previous_window_start = r.t0, r.t1, r.t2
        if r.is_total then
            recent = r.recent ~= null and r.recent or 0
            previous = r.previous ~= null and r.previous or 0
            if r.from_daily then
                out.resolution_note = stats.DAILY_NOTE
            end
        else
            local trend, pct = stats.trend(r.recent, r.previous)
            -- the database's order; stats.trend has the last word on what is listed
            if trend == req.args.direction then
                out.patterns[#out.patterns + 1] = { pattern_id = r.pattern_id,
                    pattern_name = r.pattern_name, pattern_type = r.pattern_type,
                    recent_usage = r.recent == null and 0 or r.recent, previous_usage = r.previous,
                    trend = trend, trend_percentage = pct }
            end
        end
    end
    local trend, pct = stats.trend(recent, previous)
    out.overall = { recent_usage = recent, previous_usage = previous, trend = trend,
        trend_percentage = pct }
    return out
end

-- ---------------------------------------------------------------- time series

local MAX_BUCKETS = 10000
local DEFAULT_SPAN = { hour = 7 * H.DAY, day = 30 * H.DAY }

-- Hourly buckets of days [$2, $3) (day numbers since 1970-01-01) and the daily buckets of those
-- days, as (daily, t = bucket start in epoch seconds, c). Both scans are PK ranges.
local SERIES = [[
SELECT false AS daily, extract(epoch FROM hour)::bigint AS t, usage_count AS c
  FROM pattern_usage_hourly
 WHERE pattern_id = $1
   AND hour >= to_timestamp($2::bigint * 86400) AND hour < to_timestamp($3::bigint * 86400)
UNION ALL
SELECT true, (day - DATE '1970-01-01')::bigint * 86400, usage_count
  FROM pattern_usage_daily
 WHERE pattern_id = $1
   AND day >= DATE '1970-01-01' + $2::int AND day < DATE '1970-01-01' + $3::int]]

local function timeseries(req)
    local bucket = req.args.bucket
    local size = bucket == "hour" and H.HOUR or H.DAY
    local now = pt.now()
    local to = H.time_arg("to", req.args.to, (math.floor(now / size) + 1) * size)
    local from = H.time_arg("from", req.args.from, to - DEFAULT_SPAN[bucket])
    if from >= to then
        H.fail422("to", "to must be later than from", "value_error.range")
    end
    local lo = math.floor(from / size) * size
    local hi = math.ceil(to / size) * size
    if lo < H.TIME_MIN or hi >= H.TIME_END then
        -- e.g. the default from 30 days before a to in January of year 1
        H.fail422(lo < H.TIME_MIN and "from" or "to", "the buckets must lie in years 1 to 9999",
            "value_error.range")
    end
    local n = (hi - lo) // size
    if n > MAX_BUCKETS then
        H.fail422("to", "at most " .. MAX_BUCKETS .. " buckets (" .. n .. " asked): shorten " ..
            "the range or use bucket=day", "value_error.range")
    end
    H.need_pattern(req.params.pattern_id)
    local day_lo, day_hi = lo // H.DAY, -((-hi) // H.DAY)
    local rows = db.query(SERIES, req.params.pattern_id, day_lo, day_hi)
    local hourly, daily = {}, {}
    for _, r in ipairs(rows) do
        local key = bucket == "hour" and not r.daily and r.t or (r.t // H.DAY) * H.DAY
        if r.daily then
            daily[key] = (daily[key] or 0) + r.c
        else
            hourly[key] = (hourly[key] or 0) + r.c
        end
    end
    local out = { pattern_id = req.params.pattern_id, bucket = bucket, from = H.iso(lo),
        to = H.iso(hi), points = pt.array() }
    local total = 0
    if bucket == "day" then
        for i = 0, n - 1 do
            local t = lo + i * size
            local c = (hourly[t] or 0) + (daily[t] or 0)
            total = total + c
            out.points[i + 1] = { start = H.iso(t), usage_count = c }
        end
    else
        -- A day held (partly) as a daily bucket cannot be split into hours: its hours are null
        -- and its whole usage (daily + any hourly rows of late events) is in rolled_up.
        out.rolled_up = pt.array()
        local days = {}
        for d, _ in pairs(daily) do
            days[#days + 1] = d
        end
        table.sort(days)
        for _, d in ipairs(days) do
            local c = daily[d]
            for h = d, d + H.DAY - H.HOUR, H.HOUR do
                c = c + (hourly[h] or 0)
            end
            out.rolled_up[#out.rolled_up + 1] = { day = H.date(d), usage_count = c }
        end
        for i = 0, n - 1 do
            local t = lo + i * size
            local c = null
            if not daily[(t // H.DAY) * H.DAY] then
                c = hourly[t] or 0
                total = total + c
            end
            out.points[i + 1] = { start = H.iso(t), usage_count = c }
        end
        if #days > 0 then
            out.resolution_note = "days older than the hourly retention are held as daily " ..
                "buckets: their hours are null and their usage is in rolled_up (ask bucket=day " ..
                "for an exact series)"
        end
    end
    out.total = total
    return out
end

-- ---------------------------------------------------------------- heatmaps

local DAY_NAMES = { "Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday" }

-- Usage per (weekday, hour of day) in the tz offset $2 (seconds) over the last $1 days up to the
-- end of the current UTC hour, from hourly buckets; plus the usage of daily buckets in that
-- range, which cannot be placed in hours. One pattern's come from its buckets (match selects
-- them); the overall one from the per-hour and per-day totals the flush and the rollup keep
-- (sql/008_totals.sql: the same sums, without reading every pattern's buckets). Weekdays count
-- from Sunday = 0, as PostgreSQL's dow; 1970-01-01 was a Thursday (4).
local function heatmap_sql(hourly, daily, match)
    return ([[
SELECT w.t1, w.t0, g.dow, g.hod, g.c,
       (SELECT coalesce(sum(u.usage_count), 0)::bigint FROM %s u
         WHERE %s AND u.day >= (w.t1 AT TIME ZONE 'UTC')::date
           AND u.day <= (w.t0 AT TIME ZONE 'UTC')::date) AS daily
  FROM %s
  LEFT JOIN LATERAL (
       SELECT ((e / 86400 + 4) %% 7)::int AS dow, (e / 3600 %% 24)::int AS hod, sum(c)::bigint AS c
         FROM (SELECT extract(epoch FROM u.hour)::bigint + $2::bigint AS e, u.usage_count AS c
                 FROM %s u
                WHERE %s AND u.hour >= w.t1 AND u.hour < w.t0) s
        GROUP BY 1, 2) g ON true]]):format(daily, match, stats.WINDOWS, hourly, match)
end
local HEATMAP_ALL = heatmap_sql("usage_hourly_totals", "usage_daily_totals", "true")
local HEATMAP_ONE = heatmap_sql("pattern_usage_hourly", "pattern_usage_daily", "u.pattern_id = $3")

local function heatmap(req, pattern_id)
    local offset, tz = H.tz_arg(req.args.tz)
    if pattern_id then
        H.need_pattern(pattern_id)
    end
    local rows = pattern_id and db.query(HEATMAP_ONE, req.args.days, offset, pattern_id)
        or db.query(HEATMAP_ALL, req.args.days, offset)
    local matrix = pt.array()
    for d = 1, 7 do
        local row = pt.array()
        for h = 1, 24 do
            row[h] = 0
        end
        matrix[d] = row
    end
    local out = { pattern_id = pattern_id, tz = tz, days = req.args.days,
        day_names = pt.array(DAY_NAMES), matrix = matrix }
    local total, max = 0, 0
    for _, r in ipairs(rows) do
        out.from, out.to = r.t1, r.t0
        out.daily_usage_not_shown = r.daily
        if r.c ~= null then
            matrix[r.dow + 1][r.hod + 1] = r.c
            total = total + r.c
            max = math.max(max, r.c)
        end
    end
    out.total, out.max = total, max
    if out.daily_usage_not_shown > 0 then
        out.resolution_note = "part of this range is older than the hourly retention and held " ..
            "as daily buckets, which cannot be placed in hours: that usage " ..
            "(daily_usage_not_shown) is not in the matrix"
    end
    return out
end

local HEATMAP_SCHEMA = obj({ pattern_id = { type = "string" }, tz = { type = "string" },
    days = { type = "integer" }, from = TIME, to = TIME,
    day_names = list({ type = "string" }),
    matrix = { type = "array",
        description = "7 rows (Sunday first, as day_names) of 24 hours (0-23) in tz",
        items = list({ type = "integer" }) },
    total = { type = "integer" }, max = { type = "integer" },
    daily_usage_not_shown = { type = "integer" }, resolution_note = { type = "string" } })
local HEATMAP_QUERY = {
    { name = "days", type = "integer", minimum = 1, maximum = 365, default = 30,
      description = "Days up to the end of the current UTC hour." },
    H.TZ_PARAM,
}
local HEATMAP_DESC = "Usage per weekday and hour of day, from the hourly buckets only: days " ..
    "older than retention_hourly_days are held per day and cannot be placed in hours (their " ..
    "usage is reported in daily_usage_not_shown)."

-- ---------------------------------------------------------------- co-occurrence

-- Co-occurrence is held in partner lists (src/cooc.h): one folded row per pattern
-- (pattern_lists.partners) and the rows flushes left pending (pattern_lists_pending), each list
-- holding both sides of its pairs. The lists are decoded and summed by pt.list_entries /
-- pt.cooc_top_pairs (src/l_cooc.c); SQL would take microseconds an entry, and a popular pattern
-- has thousands of partners.

-- One statement, so one snapshot: the pattern's usage (no row at all when it is unknown), the
-- event totals and its lists (one row with a NULL list when it has none).
local PARTNER_LISTS = [[
WITH me AS (SELECT coalesce(usage_count, 0)::bigint AS usage_count
              FROM pattern_lineage_nodes WHERE pattern_id = $1),
     tot AS (]] .. H.EVENT_TOTALS .. [[),
     l AS (SELECT partners AS data FROM pattern_lists
            WHERE pattern_id = $1 AND partners IS NOT NULL
           UNION ALL
           SELECT partners FROM pattern_lists_pending
            WHERE pattern_id = $1 AND partners IS NOT NULL)
SELECT me.usage_count AS me_usage_count, tot.events_with_patterns,
       tot.events_over_cooccurrence_limit, l.data
  FROM me CROSS JOIN tot LEFT JOIN l ON true]]

-- The partners ($1 ids, $2 counts, $3 last times, as pt.list_entries gives them) with their
-- catalog rows, the top $4 in the order asked for ($5 = count, lift or jaccard; $6 = the
-- pattern's own usage). Lift orders as count / usage(partner) and Jaccard as
-- count / (usage($1) + usage(partner) - count): N and the pattern's usage are the same for all.
local RANK_PARTNERS = [[
SELECT p.other AS pattern_id, coalesce(n.pattern_name, p.other) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type,
       coalesce(n.usage_count, 0)::bigint AS usage_count, p.cnt AS count,
       pt_ts(p.l) AS last_seen_together
  FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS p(other, cnt, l)
  LEFT JOIN pattern_lineage_nodes n ON n.pattern_id = p.other
 ORDER BY CASE $5 WHEN 'count' THEN NULL
                  WHEN 'lift' THEN p.cnt::numeric / nullif(coalesce(n.usage_count, 0), 0)
                  ELSE p.cnt::numeric / nullif($6::bigint + coalesce(n.usage_count, 0) - p.cnt, 0)
          END DESC NULLS LAST, p.cnt DESC, p.other COLLATE "C"
 LIMIT $4]]

-- For /cooccurrence/top ($1 = limit), in one snapshot: a header row (the event totals, and in cnt
-- how many pairs pattern_cooccurrence_top keeps), the top's rows, and the pending lists that can
-- change the answer. Every count is at least its merged part, so the top's $1-th count (k0) is a
-- floor of the answer's last one. A pending pair is in both its patterns' lists, with at most
-- their sums of partners_max (bound) pending; its merged part is the top's row, or at most the
-- top's last count (tmin) when the top is full and the pair is not in it. A pattern whose pairs
-- cannot reach k0 (tmin + bound < k0, and every top row of it below k0 with its pending added)
-- cannot change the answer, and its lists are not read: under ingest, with the fold behind,
-- they are most of the pending rows. A NULL partners_max (rows from before 016) is no bound.
local TOP_READ = [[
WITH top AS (SELECT pattern_id_1 AS a, pattern_id_2 AS b, cooccurrence_count AS cnt, last_us AS l
               FROM pattern_cooccurrence_top),
lim AS (SELECT coalesce((SELECT cnt FROM top ORDER BY cnt DESC OFFSET $1 - 1 LIMIT 1), 0) AS k0,
               CASE WHEN (SELECT count(*) FROM top) >= pt_cooccurrence_top_keep()
                    THEN coalesce((SELECT min(cnt) FROM top), 0) ELSE 0 END AS tmin),
b AS (SELECT pattern_id, CASE WHEN count(partners_max) = count(*) THEN sum(partners_max) END
                         AS bound
        FROM pattern_lists_pending WHERE n_partners > 0 GROUP BY pattern_id),
cand AS (SELECT b.pattern_id FROM b, lim WHERE b.bound IS NULL OR lim.tmin + b.bound >= lim.k0
         UNION
         SELECT x.p
           FROM top t JOIN b ba ON ba.pattern_id = t.a JOIN b bb ON bb.pattern_id = t.b
                CROSS JOIN lim CROSS JOIN LATERAL (VALUES (t.a), (t.b)) AS x(p)
          WHERE t.cnt + least(coalesce(ba.bound, 4611686018427387904),
                              coalesce(bb.bound, 4611686018427387904)) >= lim.k0)
SELECT 'h' AS kind, NULL::text AS a, NULL::text AS b, pt_cooccurrence_top_keep()::bigint AS cnt,
       NULL::bigint AS l, NULL::bytea AS data, tot.events_with_patterns,
       tot.events_over_cooccurrence_limit
  FROM (]] .. H.EVENT_TOTALS .. [[) tot
UNION ALL
SELECT 't', a, b, cnt, l, NULL, NULL, NULL FROM top
UNION ALL
SELECT 'p', pattern_id, NULL, NULL, NULL, partners, NULL, NULL FROM pattern_lists_pending
 WHERE n_partners > 0 AND pattern_id IN (SELECT pattern_id FROM cand)]]
-- The lists of the patterns ($1) whose pending pairs may rank in the top but whose merged part
-- is not in pattern_cooccurrence_top; all lists when $1 is NULL.
local TOP_RESOLVE = [[
SELECT 'r' AS kind, pattern_id AS a, partners AS data FROM pattern_lists
 WHERE partners IS NOT NULL AND ($1::text[] IS NULL OR pattern_id = ANY($1::text[]))
UNION ALL
SELECT 'r', pattern_id, partners FROM pattern_lists_pending
 WHERE partners IS NOT NULL AND ($1::text[] IS NULL OR pattern_id = ANY($1::text[]))]]
-- The pairs pt.cooc_top_pairs chose, in its order, with their catalog rows.
local TOP_NAMES = [[
SELECT c.a AS pattern_id_1, coalesce(n1.pattern_name, c.a) AS pattern_name_1,
       coalesce(n1.usage_count, 0)::bigint AS usage_count_1,
       c.b AS pattern_id_2, coalesce(n2.pattern_name, c.b) AS pattern_name_2,
       coalesce(n2.usage_count, 0)::bigint AS usage_count_2,
       c.cnt AS count, pt_ts(c.l) AS last_seen_together
  FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY
       AS c(a, b, cnt, l, rn)
  LEFT JOIN pattern_lineage_nodes n1 ON n1.pattern_id = c.a
  LEFT JOIN pattern_lineage_nodes n2 ON n2.pattern_id = c.b
 ORDER BY c.rn]]

local MEASURES_DESC = "lift = count * events_with_patterns / (usage_count(a) * usage_count(b)) " ..
    "(1 = together as often as chance); jaccard = count / (usage_count(a) + usage_count(b) - " ..
    "count); both rounded to 6 decimals. Pairs are recorded for events with at most " ..
    "cooccurrence_max_patterns distinct patterns; events above it are counted in " ..
    "events_over_cooccurrence_limit (their uses still count)."

local function cooccurring(req)
    local id, sort, limit = req.params.pattern_id, req.args.sort, req.args.limit
    local rows = db.query(PARTNER_LISTS, id)
    if #rows == 0 then
        pt.fail(404, "Pattern not found: " .. id)
    end
    local me, n = rows[1].me_usage_count, rows[1].events_with_patterns
    local lists = {}
    for _, r in ipairs(rows) do
        if r.data ~= null then
            lists[#lists + 1] = r.data
        end
    end
    local out = pt.array()
    -- by count only the top `limit` are looked up; lift and Jaccard need every partner's usage.
    -- The catalog is read just after the counts: a partner's usage may be a flush newer.
    local ids, counts, _, lasts, np = pt.list_entries(lists, sort == "count" and limit or 0)
    if np > 0 then
        for _, r in ipairs(db.query(RANK_PARTNERS, ids, counts, lasts, limit, sort, me)) do
            local lift, jaccard = H.measures(r.count, me, r.usage_count, n)
            out[#out + 1] = { pattern_id = r.pattern_id, pattern_name = r.pattern_name,
                pattern_type = r.pattern_type, usage_count = r.usage_count, count = r.count,
                lift = lift, jaccard = jaccard, last_seen_together = r.last_seen_together }
        end
    end
    return { pattern_id = id, usage_count = me, events_with_patterns = n,
        events_over_cooccurrence_limit = rows[1].events_over_cooccurrence_limit,
        cooccurring = out }
end

local function top_pairs(req)
    local limit = req.args.limit
    local rows = db.query_heavy(TOP_READ, limit)
    local head
    for _, r in ipairs(rows) do
        if r.kind == "h" then
            head = r
            break
        end
    end
    local pairs_, need = pt.cooc_top_pairs(rows, limit)
    if not pairs_ then
        -- true: every list (the top keeps fewer pairs than asked for)
        local more = db.query_heavy(TOP_RESOLVE, need ~= true and H.text_array(need) or nil)
        pairs_ = pt.cooc_top_pairs(rows, limit, need, more)
    end
    local out = pt.array()
    if pairs_.n > 0 then
        for _, r in ipairs(db.query(TOP_NAMES, pairs_.ids1, pairs_.ids2, pairs_.counts,
            pairs_.lasts)) do
            local lift, jaccard = H.measures(r.count, r.usage_count_1, r.usage_count_2,
                head.events_with_patterns)
            out[#out + 1] = { pattern_id_1 = r.pattern_id_1, pattern_name_1 = r.pattern_name_1,
                usage_count_1 = r.usage_count_1, pattern_id_2 = r.pattern_id_2,
                pattern_name_2 = r.pattern_name_2, usage_count_2 = r.usage_count_2,
                count = r.count, lift = lift, jaccard = jaccard,
                last_seen_together = r.last_seen_together }
        end
    end
    return { events_with_patterns = head.events_with_patterns,
        events_over_cooccurrence_limit = head.events_over_cooccurrence_limit, pairs = out }
end

-- ---------------------------------------------------------------- lifecycle

-- Deprecated or retired patterns used since $1 (at most $2), most recently used first.
local STILL_USED = [[
SELECT n.pattern_id, coalesce(n.pattern_name, n.pattern_id) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type, n.status,
       coalesce(n.usage_count, 0)::bigint AS usage_count, n.last_used_at,
       floor(extract(epoch FROM now() - n.last_used_at) / 86400)::bigint AS days_since_last_use,
       count(*) OVER () AS total
  FROM pattern_lineage_nodes n
 WHERE n.status <> 'active' AND n.last_used_at >= $1::timestamptz
 ORDER BY n.last_used_at DESC, n.pattern_id COLLATE "C" LIMIT $2]]

-- The partner lists of agents (folded and pending) of the patterns $1 (a text[]).
local AGENT_LISTS_OF = [[
SELECT pattern_id, agents AS data FROM pattern_lists
 WHERE pattern_id = ANY($1::text[]) AND agents IS NOT NULL
UNION ALL
SELECT pattern_id, agents FROM pattern_lists_pending
 WHERE pattern_id = ANY($1::text[]) AND agents IS NOT NULL]]

-- Active patterns never used, older than their type's lifetime ($1 types, $2 their days, $3 the
-- default), at most $4.
local NEVER_USED = [[
WITH lt AS (SELECT * FROM unnest($1::text[], $2::int[]) AS x(typ, days))
SELECT n.pattern_id, coalesce(n.pattern_name, n.pattern_id) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type, n.status, n.created_at,
       floor(extract(epoch FROM now() - n.created_at) / 86400)::bigint AS age_days,
       l.days AS lifetime_days, count(*) OVER () AS total
  FROM pattern_lineage_nodes n
 CROSS JOIN LATERAL (SELECT coalesce((SELECT lt.days FROM lt
                                       WHERE lt.typ = coalesce(n.pattern_type, 'unknown')),
                                      $3::int) AS days) l
 WHERE n.status = 'active' AND coalesce(n.usage_count, 0) = 0
   AND n.created_at <= now() - make_interval(days => l.days)
 ORDER BY n.created_at, n.pattern_id COLLATE "C" LIMIT $4]]

-- Active patterns used before, but not since $1, at most $2.
local NOT_RECENT = [[
SELECT n.pattern_id, coalesce(n.pattern_name, n.pattern_id) AS pattern_name,
       coalesce(n.pattern_type, 'unknown') AS pattern_type, n.status,
       coalesce(n.usage_count, 0)::bigint AS usage_count, n.last_used_at,
       floor(extract(epoch FROM now() - n.last_used_at) / 86400)::bigint AS days_since_last_use,
       count(*) OVER () AS total
  FROM pattern_lineage_nodes n
 WHERE n.status = 'active' AND n.last_used_at < $1::timestamptz
 ORDER BY n.last_used_at, n.pattern_id COLLATE "C" LIMIT $2]]

local function strip_total(rows, fields)
    local out, total = pt.array(), 0
    for i, r in ipairs(rows) do
        total = r.total
        local item = {}
        for _, f in ipairs(fields) do
            item[f] = r[f]
        end
        out[i] = item
    end
    return out, total
end

local function lifecycle(req)
    local days, limit = req.args.days, req.args.limit
    local c = db.query([[SELECT c, (extract(epoch FROM c) * 1000000)::bigint AS c_us
                           FROM (SELECT now() - make_interval(days => $1::int) AS c) x]], days)[1]
    local cut, cut_us = c.c, c.c_us
    local still, by_id, ids = pt.array(), {}, {}
    local rows = db.query_heavy(STILL_USED, cut, limit)
    local still_total = #rows > 0 and rows[1].total or 0
    for i, r in ipairs(rows) do
        r.total = nil
        r.agent_count, r.agents = 0, pt.array()
        still[i], by_id[r.pattern_id], ids[i] = r, r, r.pattern_id
    end
    if #ids > 0 then
        -- Each pattern's agents that used it since the cut, most recent first (ties by name in
        -- byte order), at most agents_limit, and how many there are: from its partner lists.
        local lists = {}
        for _, r in ipairs(db.query_heavy(AGENT_LISTS_OF, H.text_array(ids))) do
            lists[r.pattern_id] = lists[r.pattern_id] or {}
            table.insert(lists[r.pattern_id], r.data)
        end
        for id, l in pairs(lists) do
            local p = by_id[id]
            local agents, n = pt.list_rows(l, req.args.agents_limit, "last", cut_us)
            p.agent_count = n
            for i, a in ipairs(agents) do
                p.agents[i] = { agent_name = a.id, usage_count = a.count,
                    last_used_at = pt.iso_us(a.last_us) }
            end
        end
    end
    local lifetimes, types, tdays = H.lifetimes(req.args.lifetime_days)
    local never, never_total = strip_total(
        db.query_heavy(NEVER_USED, H.text_array(types), H.int_array(tdays), lifetimes.default,
            limit),
        { "pattern_id", "pattern_name", "pattern_type", "status", "created_at", "age_days",
          "lifetime_days" })
    local stale, stale_total = strip_total(db.query_heavy(NOT_RECENT, cut, limit),
        { "pattern_id", "pattern_name", "pattern_type", "status", "usage_count", "last_used_at",
          "days_since_last_use" })
    return {
        days = days,
        lifetime_days = lifetimes,
        deprecated_in_use = still,
        potentially_stale = never,
        not_used_recently = stale,
        counts = { deprecated_in_use = still_total, potentially_stale = never_total,
            not_used_recently = stale_total },
    }
end

-- ---------------------------------------------------------------- routes

local PAIR = obj({ pattern_id_1 = { type = "string" }, pattern_name_1 = { type = "string" },
    usage_count_1 = { type = "integer" }, pattern_id_2 = { type = "string" },
    pattern_name_2 = { type = "string" }, usage_count_2 = { type = "integer" },
    count = { type = "integer" }, lift = { type = "number", nullable = true },
    jaccard = { type = "number", nullable = true }, last_seen_together = TIME })
local PARTNER = obj({ pattern_id = { type = "string" }, pattern_name = { type = "string" },
    pattern_type = { type = "string" }, usage_count = { type = "integer" },
    count = { type = "integer" }, lift = { type = "number", nullable = true },
    jaccard = { type = "number", nullable = true }, last_seen_together = TIME })
local LIFECYCLE_ITEM = obj({ pattern_id = { type = "string" }, pattern_name = { type = "string" },
    pattern_type = { type = "string" },
    status = { type = "string", enum = pt.array({ "active", "deprecated", "retired" }) },
    usage_count = { type = "integer" }, last_used_at = TIME_OR_NULL,
    days_since_last_use = { type = "integer" }, created_at = TIME, age_days = { type = "integer" },
    lifetime_days = { type = "integer" }, agent_count = { type = "integer" },
    agents = list(obj({ agent_name = { type = "string" }, usage_count = { type = "integer" },
        last_used_at = TIME })) })

return {
    {
        method = "GET", path = "/api/patterns/usage/trends", tags = { "history" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Fastest rising or falling patterns, and the overall trend",
        description = "Usage in the last window_days days against the window_days before, both " ..
            "ending at the end of the current UTC hour, with the rule of " ..
            "/api/patterns/usage/{pattern_id}: above +10 % increasing, below -10 % decreasing " ..
            "(trend_percentage as an absolute value), insufficient_data (never listed) when the " ..
            "earlier window has no usage. Ordered by trend_percentage, then by the absolute " ..
            "change, then pattern_id. Days older than retention_hourly_days are held as daily " ..
            "buckets and count in the window holding their start (resolution_note then says so).",
        query = {
            { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20 },
            { name = "direction", type = "string", enum = { "increasing", "decreasing" },
              default = "increasing" },
            { name = "window_days", type = "integer", minimum = 1, maximum = 90, default = 7 },
        },
        responses = { ["200"] = { description = "Trends", schema = obj({
            window_days = { type = "integer" }, direction = { type = "string" },
            window_end = TIME, recent_window_start = TIME, previous_window_start = TIME,
            overall = obj({ recent_usage = { type = "integer" },
                previous_usage = { type = "integer" },
                trend = TREND, trend_percentage = { type = "number" } }),
            patterns = list(TREND_ITEM), resolution_note = { type = "string" } }) } },
        handler = function(req)
            local a = req.args
            -- the hour in the key: windows end at the end of the current hour
            return H.cached("trends", string.format("%d/%s/%d/%d", a.window_days, a.direction,
                a.limit, pt.now() // 3600), function()
                return trends(req)
            end)
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/{pattern_id}/timeseries", tags = { "history" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Usage of one pattern per hour or per UTC day, zero-filled",
        description = "Buckets whose start lies in [from rounded down to the bucket, to); " ..
            "defaults: to = the end of the current bucket, from = to - 7 days (hour) or " ..
            "30 days (day). At most 10000 buckets. Days older than retention_hourly_days are " ..
            "held as daily buckets: bucket=day stays exact; with bucket=hour their hours are " ..
            "null and their usage is listed in rolled_up, with a resolution_note.",
        query = {
            { name = "bucket", type = "string", enum = { "hour", "day" }, default = "hour" },
            { name = "from", type = "string", max_length = 64,
              description = "ISO-8601 time (UTC when it has no offset)." },
            { name = "to", type = "string", max_length = 64,
              description = "ISO-8601 time, exclusive." },
        },
        responses = { ["200"] = { description = "Series", schema = obj({
            pattern_id = { type = "string" }, bucket = { type = "string" }, from = TIME, to = TIME,
            total = { type = "integer" },
            points = list(obj({ start = TIME,
                usage_count = { type = "integer", nullable = true } })),
            rolled_up = list(obj({ day = { type = "string", format = "date" },
                usage_count = { type = "integer" } })),
            resolution_note = { type = "string" } }) }, ["404"] = NOT_FOUND },
        handler = timeseries,
    },
    {
        method = "GET", path = "/api/patterns/usage/heatmap", tags = { "history" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Usage of all patterns per weekday x hour of day",
        description = HEATMAP_DESC, query = HEATMAP_QUERY,
        responses = { ["200"] = { description = "Heatmap", schema = HEATMAP_SCHEMA } },
        handler = function(req)
            return H.cached("heatmap", string.format("%d/%s/%d", req.args.days, req.args.tz,
                pt.now() // 3600), function()
                return heatmap(req, nil)
            end)
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/{pattern_id}/heatmap", tags = { "history" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Usage of one pattern per weekday x hour of day",
        description = HEATMAP_DESC, query = HEATMAP_QUERY,
        responses = { ["200"] = { description = "Heatmap", schema = HEATMAP_SCHEMA },
            ["404"] = NOT_FOUND },
        handler = function(req)
            return heatmap(req, req.params.pattern_id)
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/{pattern_id}/cooccurring", tags = { "history" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Patterns used in the same events as this one",
        description = MEASURES_DESC,
        query = {
            { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20 },
            { name = "sort", type = "string", enum = { "count", "lift", "jaccard" },
              default = "count" },
        },
        responses = { ["200"] = { description = "Partners", schema = obj({
            pattern_id = { type = "string" }, usage_count = { type = "integer" },
            events_with_patterns = { type = "integer" },
            events_over_cooccurrence_limit = { type = "integer" },
            cooccurring = list(PARTNER) }) }, ["404"] = NOT_FOUND },
        handler = cooccurring,
    },
    {
        method = "GET", path = "/api/patterns/usage/cooccurrence/top", tags = { "history" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Pairs of patterns most often used in the same event",
        description = MEASURES_DESC,
        query = { { name = "limit", type = "integer", minimum = 1, maximum = 100, default = 20 } },
        responses = { ["200"] = { description = "Pairs, most frequent first", schema = obj({
            events_with_patterns = { type = "integer" },
            events_over_cooccurrence_limit = { type = "integer" }, pairs = list(PAIR) }) } },
        handler = function(req)
            return H.cached("pairs", tostring(req.args.limit), function()
                return top_pairs(req)
            end)
        end,
    },
    {
        method = "GET", path = "/api/patterns/usage/lifecycle", tags = { "history" },
        cache = true, -- answers reused until new data is committed (router.lua)
        summary = "Lifecycle contradictions and staleness",
        description = "deprecated_in_use: deprecated or retired patterns used in the last days " ..
            "days, with the agents that used them then, most recent first (at most " ..
            "agents_limit; agent_count says how many; usage_count per agent is all-time). " ..
            "potentially_stale: active patterns never used whose age exceeds the expected " ..
            "lifetime of their pattern_type (lifetime_days overrides it for every type). " ..
            "not_used_recently: active patterns used before but not in the last days days. " ..
            "Each list holds at most limit items; counts has their full sizes.",
        query = {
            { name = "days", type = "integer", minimum = 1, maximum = 365, default = 30 },
            { name = "lifetime_days", type = "integer", minimum = 1, maximum = 36500,
              description = "Expected lifetime for every pattern_type (default: per type)." },
            { name = "limit", type = "integer", minimum = 1, maximum = 1000, default = 100 },
            { name = "agents_limit", type = "integer", minimum = 1, maximum = 50, default = 10,
              description = "Agents listed per deprecated pattern (agent_count has them all)." },
        },
        responses = { ["200"] = { description = "Lifecycle health", schema = obj({
            days = { type = "integer" },
            lifetime_days = obj({ default = { type = "integer" },
                by_type = { type = "object", additionalProperties = { type = "integer" } } }),
            deprecated_in_use = list(LIFECYCLE_ITEM), potentially_stale = list(LIFECYCLE_ITEM),
            not_used_recently = list(LIFECYCLE_ITEM),
            counts = obj({ deprecated_in_use = { type = "integer" },
                potentially_stale = { type = "integer" },
                not_used_recently = { type = "integer" } }) }) } },
        handler = function(req)
            local a = req.args
            return H.cached("lifecycle", string.format("%d/%s/%d/%d", a.days,
                tostring(a.lifetime_days), a.limit, a.agents_limit), function()
                return lifecycle(req)
            end)
        end,
    },
}
