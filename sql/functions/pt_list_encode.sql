-- A partner list (src/cooc.h) from its entries, partners in strictly increasing byte order:
-- version 3 (count, first and last time: a pattern's agents, an agent's patterns) when p_firsts
-- is given, else version 2 (count and last time: a pattern's co-occurring patterns). For the
-- migrations and for anyone who must write lists by hand, e.g.
--   SELECT pt_list_encode(array_agg(p ORDER BY p COLLATE "C"), array_agg(c ORDER BY p COLLATE "C"),
--                         array_agg(f ORDER BY p COLLATE "C"), array_agg(l ORDER BY p COLLATE "C"))
-- The engine writes lists itself; this is the same layout at SQL's speed (microseconds an entry).
CREATE OR REPLACE FUNCTION pt_list_encode(p_partners TEXT[], p_counts BIGINT[], p_firsts BIGINT[],
                                          p_lasts BIGINT[])
RETURNS BYTEA
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS
$$
DECLARE
    v_usage  BOOLEAN := p_firsts IS NOT NULL;
    v_hex    TEXT[] := ARRAY[CASE WHEN p_firsts IS NOT NULL THEN '03' ELSE '02' END];
    v_prev   BYTEA := ''::bytea;
    v_cur    BYTEA;
    v_last   BIGINT := 0;
    v_shared INTEGER;
    v_d      NUMERIC;
    v_n      INTEGER := coalesce(cardinality(p_partners), 0);
BEGIN
    IF v_n <> coalesce(cardinality(p_counts), 0) OR v_n <> coalesce(cardinality(p_lasts), 0)
       OR (v_usage AND v_n <> cardinality(p_firsts)) THEN
        RAISE EXCEPTION 'pt_list_encode: % partners, % counts, % first times, % last times', v_n,
            coalesce(cardinality(p_counts), 0), coalesce(cardinality(p_firsts), 0),
            coalesce(cardinality(p_lasts), 0);
    END IF;
    FOR i IN 1..v_n LOOP
        v_cur := convert_to(p_partners[i], 'UTF8');
        IF octet_length(v_cur) NOT BETWEEN 1 AND 255 OR p_counts[i] IS NULL OR p_counts[i] < 1
           OR p_lasts[i] IS NULL OR (i > 1 AND v_cur <= v_prev)
           OR (v_usage AND (p_firsts[i] IS NULL OR p_firsts[i] > p_lasts[i])) THEN
            RAISE EXCEPTION 'pt_list_encode: entry % (%): partners must be 1-255 bytes in '
                            'increasing byte order, counts >= 1, times not null, first <= last',
                            i, p_partners[i];
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
                           || pt_varint_hex(p_counts[i])
                           || pt_varint_hex(CASE WHEN v_d >= 0 THEN 2 * v_d ELSE -2 * v_d - 1 END)
                           || CASE WHEN v_usage
                                   THEN pt_varint_hex(p_lasts[i]::numeric - p_firsts[i])
                                   ELSE '' END);
        v_prev := v_cur;
        v_last := p_lasts[i];
    END LOOP;
    RETURN decode(array_to_string(v_hex, ''), 'hex');
END
$$;
