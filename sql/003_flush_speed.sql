-- 003: flush speed. pt_ts inlinable: 002 declared it IMMUTABLE over timestamptz + interval, which is only
-- STABLE, so PostgreSQL could not inline it and ran it as a separate SQL function call per row
-- (most of a flush's time). timestamp + interval and AT TIME ZONE 'UTC' are immutable.
CREATE OR REPLACE FUNCTION pt_ts(us BIGINT) RETURNS TIMESTAMPTZ
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$ SELECT (TIMESTAMP '1970-01-01 00:00:00' + us * INTERVAL '1 microsecond') AT TIME ZONE 'UTC' $$;

-- The hour index only serves range scans over recent time (overall trends, retention); a BRIN
-- index answers those for a fraction of the per-row cost every flush paid for the b-tree.
DROP INDEX IF EXISTS idx_pattern_usage_hourly_hour;
CREATE INDEX IF NOT EXISTS idx_pattern_usage_hourly_hour_brin
    ON pattern_usage_hourly USING BRIN (hour);
