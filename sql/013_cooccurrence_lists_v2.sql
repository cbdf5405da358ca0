-- 013: partner lists in format 2 (the layout is in src/cooc.h): each partner as the bytes it
-- shares with the partner before plus its own, count and the change of last time as varints.
-- An entry of an ID like "pat-000123" is about 9 bytes where format 1 took 27, and every list
-- byte costs four times over: the flush sends it, PostgreSQL writes it to the table and the
-- WAL, and merges read it and write it again. Measured with 8 patterns in every event
-- (BENCHMARKS.md, "Co-occurrence as partner lists").
--
-- Engines of the previous version still running would append format 1 lists: the CHECKs below
-- refuse them, so such an engine's flushes fail loudly (and keep their batch) until it is
-- upgraded; nothing is counted twice or lost.

-- No merge may run while the lists change format, nor a flush append to them.
SELECT pg_advisory_xact_lock(7412503912);
LOCK TABLE pattern_cooccurrence_pending, pattern_cooccurrence_merged IN EXCLUSIVE MODE;


-- A varint of a value 0 .. 2^64-1, as hex.
CREATE OR REPLACE FUNCTION pt_cooc_varint_hex(p_v NUMERIC)
RETURNS TEXT
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS
$$
DECLARE
    v_v NUMERIC := p_v;
    v_r TEXT := '';
BEGIN
    IF v_v < 0 OR v_v >= 2::numeric ^ 64 THEN
        RAISE EXCEPTION 'varint out of range: %', p_v;
    END IF;
    WHILE v_v >= 128 LOOP
        v_r := v_r || lpad(to_hex((v_v % 128)::integer + 128), 2, '0');
        v_v := div(v_v, 128);
    END LOOP;
    RETURN v_r || lpad(to_hex(v_v::integer), 2, '0');
END
$$;

-- A partner list (format 2) from its entries, partners in strictly increasing byte order: for
-- anyone who must write lists by hand (and for the conversion below), e.g.
--   SELECT pt_cooc_list(array_agg(p ORDER BY p COLLATE "C"), array_agg(c ORDER BY p COLLATE "C"),
--                       array_agg(l ORDER BY p COLLATE "C")) FROM ...
CREATE OR REPLACE FUNCTION pt_cooc_list(p_partners TEXT[], p_counts BIGINT[], p_lasts BIGINT[])
RETURNS BYTEA
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS
$$
DECLARE
    v_hex    TEXT[] := ARRAY['02'];
    v_prev   BYTEA := ''::bytea;
    v_cur    BYTEA;
    v_last   BIGINT := 0;
    v_shared INTEGER;
    v_d      NUMERIC;
    v_n      INTEGER := coalesce(cardinality(p_partners), 0);
BEGIN
    IF v_n <> coalesce(cardinality(p_counts), 0) OR v_n <> coalesce(cardinality(p_lasts), 0) THEN
        RAISE EXCEPTION 'pt_cooc_list: % partners, % counts, % times', v_n,
            coalesce(cardinality(p_counts), 0), coalesce(cardinality(p_lasts), 0);
    END IF;
    FOR i IN 1..v_n LOOP
        v_cur := convert_to(p_partners[i], 'UTF8');
        IF octet_length(v_cur) NOT BETWEEN 1 AND 255 OR p_counts[i] IS NULL OR p_counts[i] < 1
           OR p_lasts[i] IS NULL OR (i > 1 AND v_cur <= v_prev) THEN
            RAISE EXCEPTION 'pt_cooc_list: entry % (%): partners must be 1-255 bytes in increasing '
                            'byte order, counts >= 1, times not null', i, p_partners[i];
        END IF;
        v_shared := 0;
        WHILE v_shared < octet_length(v_prev) AND v_shared < octet_length(v_cur)
              AND get_byte(v_prev, v_shared) = get_byte(v_cur, v_shared) LOOP
            v_shared := v_shared + 1;
        END LOOP;
        v_d := p_lasts[i]::numeric - v_last;
        v_hex := v_hex || (lpad(to_hex(v_shared), 2, '0')
                           || lpad(to_hex(octet_length(v_cur) - v_shared), 2, '0')
                           || encode(substring(v_cur FROM v_shared + 1), 'hex')
                           || pt_cooc_varint_hex(p_counts[i])
                           || pt_cooc_varint_hex(CASE WHEN v_d >= 0 THEN 2 * v_d
                                                      ELSE -2 * v_d - 1 END));
        v_prev := v_cur;
        v_last := p_lasts[i];
    END LOOP;
    RETURN decode(array_to_string(v_hex, ''), 'hex');
END
$$;

-- Every list rewritten, read by 012's pt_cooc_entries (format 1) before it is replaced below.
ALTER TABLE pattern_cooccurrence_merged DROP CONSTRAINT IF EXISTS pattern_cooccurrence_merged_data_check;
ALTER TABLE pattern_cooccurrence_pending DROP CONSTRAINT IF EXISTS pattern_cooccurrence_pending_data_check;
UPDATE pattern_cooccurrence_merged
   SET data = (SELECT pt_cooc_list(array_agg(e.partner ORDER BY e.o), array_agg(e.cnt ORDER BY e.o),
                                   array_agg(e.last_us ORDER BY e.o))
                 FROM pt_cooc_entries(data) WITH ORDINALITY AS e(partner, cnt, last_us, o));
UPDATE pattern_cooccurrence_pending
   SET data = (SELECT pt_cooc_list(array_agg(e.partner ORDER BY e.o), array_agg(e.cnt ORDER BY e.o),
                                   array_agg(e.last_us ORDER BY e.o))
                 FROM pt_cooc_entries(data) WITH ORDINALITY AS e(partner, cnt, last_us, o));
ALTER TABLE pattern_cooccurrence_merged ADD CONSTRAINT pattern_cooccurrence_merged_data_check
    CHECK (get_byte(data, 0) = 2);
ALTER TABLE pattern_cooccurrence_pending ADD CONSTRAINT pattern_cooccurrence_pending_data_check
    CHECK (get_byte(data, 0) = 2);
DROP FUNCTION IF EXISTS pt_cooc_entry(TEXT, BIGINT, BIGINT);

-- The lists are format 2 now: pt_cooc_entries reads that (the views of 012 call it), and
-- 012's writer of format 1 entries goes. The entries of a partner list after the first p_skip
-- (n_low skips those below the row's pattern, leaving each pair once), as rows. Checks what
-- src/cooc.c checks.
CREATE OR REPLACE FUNCTION pt_cooc_entries(p_list BYTEA, p_skip INTEGER DEFAULT 0)
RETURNS TABLE (partner TEXT, cnt BIGINT, last_us BIGINT)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS
$$
DECLARE
    v_list   BYTEA := p_list; -- detoasted once, not at every get_byte
    v_end    INTEGER := octet_length(p_list);
    v_pos    INTEGER := 1; -- 0-based offset of the next entry
    v_prev   BYTEA := ''::bytea;
    v_cur    BYTEA;
    v_last   BIGINT := 0;
    v_shared INTEGER;
    v_n      INTEGER;
    v_i      INTEGER := 0;
    v_k      INTEGER;
    v_b      INTEGER;
    v_shift  INTEGER;
    v_val    NUMERIC;
    v_vals   NUMERIC[];
BEGIN
    IF v_end < 1 OR get_byte(v_list, 0) <> 2 THEN
        RAISE EXCEPTION 'not a partner list of format 2 (version byte %)',
            CASE WHEN v_end > 0 THEN get_byte(v_list, 0) END;
    END IF;
    WHILE v_pos < v_end LOOP
        IF v_pos + 2 > v_end THEN
            RAISE EXCEPTION 'truncated partner list at byte %', v_pos;
        END IF;
        v_shared := get_byte(v_list, v_pos);
        v_n := get_byte(v_list, v_pos + 1);
        IF v_shared > octet_length(v_prev) OR v_n = 0 OR v_shared + v_n > 255
           OR v_pos + 2 + v_n > v_end THEN
            RAISE EXCEPTION 'malformed partner list at byte %', v_pos;
        END IF;
        v_cur := substring(v_prev FROM 1 FOR v_shared)
                 || substring(v_list FROM v_pos + 3 FOR v_n);
        IF v_i > 0 AND v_cur <= v_prev THEN
            RAISE EXCEPTION 'partner list out of order at byte %', v_pos;
        END IF;
        v_pos := v_pos + 2 + v_n;
        v_vals := '{}';
        FOR v_k IN 1..2 LOOP
            v_val := 0;
            v_shift := 0;
            LOOP
                IF v_pos >= v_end OR v_shift > 63 THEN
                    RAISE EXCEPTION 'malformed varint in partner list at byte %', v_pos;
                END IF;
                v_b := get_byte(v_list, v_pos);
                v_pos := v_pos + 1;
                v_val := v_val + (v_b & 127)::numeric * (2::numeric ^ v_shift);
                v_shift := v_shift + 7;
                EXIT WHEN v_b < 128;
            END LOOP;
            v_vals := v_vals || v_val;
        END LOOP;
        IF v_vals[1] < 1 OR v_vals[1] > 9223372036854775807 THEN
            RAISE EXCEPTION 'partner list count out of range at byte %', v_pos;
        END IF;
        -- zigzag: even values are changes >= 0, odd ones below 0
        v_last := v_last + CASE WHEN v_vals[2] % 2 = 0 THEN v_vals[2] / 2
                                ELSE -((v_vals[2] + 1) / 2) END;
        IF v_i >= p_skip THEN
            partner := convert_from(v_cur, 'UTF8');
            cnt := v_vals[1]::bigint;
            last_us := v_last;
            RETURN NEXT;
        END IF;
        v_prev := v_cur;
        v_i := v_i + 1;
    END LOOP;
END
$$;
