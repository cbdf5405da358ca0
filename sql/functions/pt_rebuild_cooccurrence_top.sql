-- Recomputes pattern_cooccurrence_top from the folded partner lists (after editing them by
-- hand, or after redefining pt_cooccurrence_top_keep()). Takes the fold's lock.
CREATE OR REPLACE FUNCTION pt_rebuild_cooccurrence_top() RETURNS VOID
LANGUAGE sql AS
$$
    SELECT pg_advisory_xact_lock(7412503912);
    DELETE FROM pattern_cooccurrence_top;
    INSERT INTO pattern_cooccurrence_top (pattern_id_1, pattern_id_2, cooccurrence_count, last_us)
    SELECT m.pattern_id, e.partner, e.cnt, e.last_us
      FROM pattern_lists m, pt_list_entries(m.partners, m.n_low) e
     ORDER BY e.cnt DESC, m.pattern_id COLLATE "C", e.partner COLLATE "C"
     LIMIT pt_cooccurrence_top_keep();
$$;
