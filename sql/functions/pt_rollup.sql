-- Rolls hourly buckets older than the UTC day of cutoff up into daily buckets, per pattern and
-- overall (pattern_usage_daily, usage_daily_totals), in one transaction: every total is the
-- same before and after. Returns the daily rows written. Called by the engine's maintenance
-- (src/maint.c, retention_hourly_days).
CREATE OR REPLACE FUNCTION pt_rollup(cutoff TIMESTAMPTZ) RETURNS BIGINT
LANGUAGE plpgsql AS
$$
DECLARE
    day_cut TIMESTAMPTZ := date_trunc('day', cutoff AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    n BIGINT;
BEGIN
    WITH moved AS (
        DELETE FROM pattern_usage_hourly WHERE hour < day_cut
        RETURNING pattern_id, (hour AT TIME ZONE 'UTC')::date AS day, usage_count)
    INSERT INTO pattern_usage_daily AS d (pattern_id, day, usage_count)
    SELECT pattern_id, day, sum(usage_count) FROM moved GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (pattern_id, day) DO UPDATE SET usage_count = d.usage_count + EXCLUDED.usage_count;
    GET DIAGNOSTICS n = ROW_COUNT;
    WITH moved AS (
        DELETE FROM usage_hourly_totals WHERE hour < day_cut
        RETURNING (hour AT TIME ZONE 'UTC')::date AS day, usage_count)
    INSERT INTO usage_daily_totals AS d (day, usage_count)
    SELECT day, sum(usage_count) FROM moved GROUP BY 1 ORDER BY 1
    ON CONFLICT (day) DO UPDATE SET usage_count = d.usage_count + EXCLUDED.usage_count;
    RETURN n;
END
$$;
