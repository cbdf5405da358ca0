-- A LEB128 varint of a value 0 .. 2^64-1, as hex: the integers of a partner list
-- (pt_list_encode).
CREATE OR REPLACE FUNCTION pt_varint_hex(p_v NUMERIC)
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
