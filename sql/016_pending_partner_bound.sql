-- 016: each pending co-occurrence list says the largest count it holds (partners_max), so
-- /cooccurrence/top reads only the pending lists of patterns whose pairs can still rank
-- (lua/routes/history.lua): a pair's pending part is at most the sum of its pattern's
-- partners_max. Rows written before this migration have NULL: no bound, read whole.
ALTER TABLE pattern_lists_pending ADD COLUMN IF NOT EXISTS partners_max BIGINT
    CHECK (partners_max > 0);

-- pt_flush gained l_partners_max: the definition before it, which nothing calls any more.
DROP FUNCTION IF EXISTS pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[],
    BIGINT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[],
    BIGINT[], TEXT[], TEXT[], BIGINT[], BIGINT[], BIGINT[], TEXT[], TEXT[], TEXT[], BIGINT[],
    BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[], TEXT[], INTEGER[], BIGINT[],
    TEXT[], TEXT[], BYTEA[], INTEGER[], TEXT[], INTEGER[], INTEGER[], INTEGER[], INTEGER[],
    INTEGER[], TEXT[], INTEGER[], INTEGER[], BYTEA, BOOLEAN);
