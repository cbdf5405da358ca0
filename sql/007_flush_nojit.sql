-- 007: no JIT and no parallel workers for the flush. Its statements are large enough to cross
-- jit_above_cost, and compiling them cost more than running them; parallel workers only compete
-- with the engine for the same cores.
ALTER FUNCTION pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[], BIGINT[],
    BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[],
    TEXT[], INTEGER[], BIGINT[], TEXT[], TEXT[], BYTEA[], INTEGER[], BIGINT[], BIGINT[], TEXT[],
    TEXT[], BIGINT[], BIGINT[], BOOLEAN)
    SET jit = off SET max_parallel_workers_per_gather = 0;
