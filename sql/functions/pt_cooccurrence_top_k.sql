-- The most pairs /cooccurrence/top answers (its limit's maximum).
CREATE OR REPLACE FUNCTION pt_cooccurrence_top_k() RETURNS INTEGER
LANGUAGE sql IMMUTABLE AS $$ SELECT 100 $$;
