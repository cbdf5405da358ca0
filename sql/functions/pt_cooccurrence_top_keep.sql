-- How many of the best folded pairs pattern_cooccurrence_top keeps (src/fold.c keeps it in the
-- fold's transaction): more than the route shows (pt_cooccurrence_top_k()), so that a pending
-- pair outside them can be told from its pending count alone not to beat the pairs shown, in
-- most cases. After changing it, SELECT pt_rebuild_cooccurrence_top().
CREATE OR REPLACE FUNCTION pt_cooccurrence_top_keep() RETURNS INTEGER
LANGUAGE sql IMMUTABLE AS $$ SELECT 1000 $$;
