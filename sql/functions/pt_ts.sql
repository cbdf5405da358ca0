-- Microseconds since the epoch as a timestamptz: how the engine sends event times. Inlinable
-- (LANGUAGE sql, IMMUTABLE): called once per row of a flush.
CREATE OR REPLACE FUNCTION pt_ts(us BIGINT) RETURNS TIMESTAMPTZ
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS
$$ SELECT (TIMESTAMP '1970-01-01 00:00:00' + us * INTERVAL '1 microsecond') AT TIME ZONE 'UTC' $$;
