-- 006: a flush sorts and hashes hundreds of thousands of rows; with the default work_mem (4 MB)
-- those sorts spilled to disk (external merge), a third of a large flush's time. The setting is
-- local to the flush's transaction.
ALTER FUNCTION pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[], BIGINT[],
    BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], BIGINT[], BIGINT[],
    TEXT[], INTEGER[], BIGINT[], TEXT[], TEXT[], BYTEA[], INTEGER[], BIGINT[], BIGINT[], TEXT[],
    TEXT[], BIGINT[], BIGINT[], BOOLEAN)
    SET work_mem = '64MB';
