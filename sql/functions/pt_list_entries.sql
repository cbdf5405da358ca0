-- The entries of a partner list (src/cooc.h; version 2 or 3) after the first p_skip (a pattern
-- row's n_low skips the partners below the pattern, leaving each pair once), as rows; first_us
-- is last_us in a version 2 list. Checks what src/cooc.c checks. For the views and for ad-hoc
-- SQL: it takes microseconds an entry (the API decodes lists in the engine).
CREATE OR REPLACE FUNCTION pt_list_entries(p_list BYTEA, p_skip INTEGER DEFAULT 0)
RETURNS TABLE (partner TEXT, cnt BIGINT, first_us BIGINT, last_us BIGINT)
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS
$$
DECLARE
    v_list   BYTEA := p_list; -- detoasted once, not at every get_byte
    v_end    INTEGER := octet_length(p_list);
    v_ver    INTEGER;
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
    v_ver := CASE WHEN v_end > 0 THEN get_byte(v_list, 0) END;
    IF v_ver IS NULL OR v_ver NOT IN (2, 3) THEN
        RAISE EXCEPTION 'not a partner list of version 2 or 3 (version byte %)', v_ver;
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
        FOR v_k IN 1..v_ver LOOP -- version 2: count, last; 3: count, last, last - first
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
            first_us := CASE WHEN v_ver = 3 THEN v_last - v_vals[3] ELSE v_last END;
            RETURN NEXT;
        END IF;
        v_prev := v_cur;
        v_i := v_i + 1;
    END LOOP;
END
$$;
