-- Trends: each pattern's usage in the last window_days against the window before, ranked in
-- SQL (GET /api/patterns/usage/trends, lua/routes/history.lua).
local stats = require("pt.stats")

local null = pt.null

local M = {}


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

function M.answer(req)
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

return M
