-- The entries of a partner list (src/cooc.h; version 2 or 3) after the first p_skip (a pattern
-- row's n_low skips the partners below the pattern, leaving each pair once), as rows; first_us
-- is last_us in a version 2 list. Checks what src/cooc.c checks. For the views and for ad-hoc
-- SQL: it takes microseconds an entry (the API decodes lists in the engine). Integers are
-- decoded as bigint: counts are below 2^63 and the engine's times (years 1..9999) change by less
-- than that; a list holding anything else is refused rather than read wrong.
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
    v_val    BIGINT;
    v_cnt    BIGINT;
    v_dlast  BIGINT;
    v_dfirst BIGINT;
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
        IF v_shared = 0 THEN
            v_cur := substring(v_list FROM v_pos + 3 FOR v_n);
        ELSE
            v_cur := substring(v_prev FROM 1 FOR v_shared)
                     || substring(v_list FROM v_pos + 3 FOR v_n);
        END IF;
        IF v_i > 0 AND v_cur <= v_prev THEN
            RAISE EXCEPTION 'partner list out of order at byte %', v_pos;
        END IF;
        v_pos := v_pos + 2 + v_n;
        FOR v_k IN 1..v_ver LOOP -- version 2: count, last; 3: count, last, last - first
            v_val := 0;
            v_shift := 0;
            LOOP
                IF v_pos >= v_end OR v_shift > 56 THEN
                    RAISE EXCEPTION 'varint out of range or cut in partner list at byte %', v_pos;
                END IF;
                v_b := get_byte(v_list, v_pos);
                v_pos := v_pos + 1;
                v_val := v_val | ((v_b & 127)::bigint << v_shift);
                v_shift := v_shift + 7;
                EXIT WHEN v_b < 128;
            END LOOP;
            IF v_k = 1 THEN
                v_cnt := v_val;
            ELSIF v_k = 2 THEN
                v_dlast := v_val;
            ELSE
                v_dfirst := v_val;
            END IF;
        END LOOP;
        IF v_cnt < 1 THEN
            RAISE EXCEPTION 'partner list count below 1 at byte %', v_pos;
        END IF;
        -- zigzag: even values are changes >= 0, odd ones below 0
        v_last := v_last + CASE WHEN v_dlast & 1 = 0 THEN v_dlast >> 1 ELSE -(v_dlast >> 1) - 1 END;
        IF v_i >= p_skip THEN
            partner := convert_from(v_cur, 'UTF8');
            cnt := v_cnt;
            last_us := v_last;
            first_us := CASE WHEN v_ver = 3 THEN v_last - v_dfirst ELSE v_last END;
            RETURN NEXT;
        END IF;
        v_prev := v_cur;
        v_i := v_i + 1;
    END LOOP;
END
$$;
