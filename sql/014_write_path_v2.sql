-- 014: the write path of BENCHMARKS.md's "Write path v2". (pattern, agent) counts leave their
-- row-per-key table for partner lists (src/cooc.h, version 3: count, first and last time), one
-- per pattern (its agents) and one per agent (its patterns), folded from the pending lists each
-- flush appends, as co-occurrence's lists already were. Which (pattern, agent) keys exist is kept
-- apart, one row each, written once (pattern_agents): it makes the distinct counts exact in the
-- flush. Co-occurrence's tables become the pattern lists' (a pattern's agents and partners in one
-- row). agent_top_patterns goes: an agent's top patterns come from its list. Conversion of the
-- data below; the functions and views are sql/functions/ and sql/views/.
--
-- Engines of an earlier version still running fail their flushes (pt_flush changed its
-- parameters) and keep their batches until they are upgraded: nothing is lost or counted twice.

-- No fold (merge) may run and no flush may write while the tables change.
SELECT pg_advisory_xact_lock(7412503912);
LOCK TABLE pattern_agent_usage, pattern_lineage_nodes, pattern_cooccurrence_pending,
           pattern_cooccurrence_merged, agent_type_usage, agent_usage_totals IN EXCLUSIVE MODE;

DROP VIEW IF EXISTS pattern_cooccurrence;
DROP VIEW IF EXISTS pattern_cooccurrence_pending_pairs;

-- Which (pattern, agent) keys have been used: inserted by the flush the first time a key is
-- seen, never updated.
CREATE TABLE pattern_agents (
    pattern_id TEXT NOT NULL,
    agent_name TEXT NOT NULL,
    PRIMARY KEY (pattern_id, agent_name)
);
INSERT INTO pattern_agents (pattern_id, agent_name)
SELECT pattern_id, agent_name FROM pattern_agent_usage ORDER BY 1, 2;

-- A pattern's folded lists: its agents (version 3) and its co-occurring patterns (version 2; the
-- first n_low sort below the pattern). NULL where it has none.
CREATE TABLE pattern_lists (
    pattern_id TEXT PRIMARY KEY,
    n_agents   INTEGER NOT NULL CHECK (n_agents >= 0),
    agents     BYTEA CHECK (get_byte(agents, 0) = 3),
    n_partners INTEGER NOT NULL CHECK (n_partners >= 0),
    n_low      INTEGER NOT NULL CHECK (n_low >= 0 AND n_low <= n_partners),
    partners   BYTEA CHECK (get_byte(partners, 0) = 2),
    folded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((agents IS NULL) = (n_agents = 0)),
    CHECK ((partners IS NULL) = (n_partners = 0))
) WITH (fillfactor = 90);
-- Lists are rewritten whole: compressing each rewrite costs more CPU than the disk it saves.
ALTER TABLE pattern_lists ALTER COLUMN agents SET STORAGE EXTERNAL,
                          ALTER COLUMN partners SET STORAGE EXTERNAL;

-- A flush's lists of one pattern, committed with its offsets; the fold merges them into
-- pattern_lists. flush_id orders flushes.
CREATE TABLE pattern_lists_pending (
    flush_id   BIGINT NOT NULL,
    pattern_id TEXT NOT NULL,
    n_agents   INTEGER NOT NULL CHECK (n_agents >= 0),
    agents     BYTEA CHECK (get_byte(agents, 0) = 3),
    n_partners INTEGER NOT NULL CHECK (n_partners >= 0),
    n_low      INTEGER NOT NULL CHECK (n_low >= 0 AND n_low <= n_partners),
    partners   BYTEA CHECK (get_byte(partners, 0) = 2),
    CHECK ((agents IS NULL) = (n_agents = 0)),
    CHECK ((partners IS NULL) = (n_partners = 0)),
    CHECK (agents IS NOT NULL OR partners IS NOT NULL)
);
ALTER TABLE pattern_lists_pending ALTER COLUMN agents SET STORAGE EXTERNAL,
                                  ALTER COLUMN partners SET STORAGE EXTERNAL;
CREATE INDEX idx_pattern_lists_pending_pattern ON pattern_lists_pending (pattern_id);
CREATE INDEX idx_pattern_lists_pending_flush ON pattern_lists_pending (flush_id);

-- An agent's folded list of patterns (version 3), and the flushes' pending ones.
CREATE TABLE agent_lists (
    agent_name TEXT PRIMARY KEY,
    n_patterns INTEGER NOT NULL CHECK (n_patterns > 0),
    patterns   BYTEA NOT NULL CHECK (get_byte(patterns, 0) = 3),
    folded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
) WITH (fillfactor = 90);
ALTER TABLE agent_lists ALTER COLUMN patterns SET STORAGE EXTERNAL;
CREATE TABLE agent_lists_pending (
    flush_id   BIGINT NOT NULL,
    agent_name TEXT NOT NULL,
    n_patterns INTEGER NOT NULL CHECK (n_patterns > 0),
    patterns   BYTEA NOT NULL CHECK (get_byte(patterns, 0) = 3)
);
ALTER TABLE agent_lists_pending ALTER COLUMN patterns SET STORAGE EXTERNAL;
CREATE INDEX idx_agent_lists_pending_agent ON agent_lists_pending (agent_name);
CREATE INDEX idx_agent_lists_pending_flush ON agent_lists_pending (flush_id);

ALTER SEQUENCE pattern_cooccurrence_flush_seq RENAME TO pt_flush_seq;

-- The rows of pattern_agent_usage into lists, both ways (pt_list_encode, sql/functions/).
INSERT INTO pattern_lists (pattern_id, n_agents, agents, n_partners, n_low, partners)
SELECT coalesce(a.pattern_id, c.pattern_id), coalesce(a.n, 0), a.data, coalesce(c.n, 0),
       coalesce(c.n_low, 0), c.data
  FROM (SELECT pattern_id, count(*) AS n,
               pt_list_encode(array_agg(agent_name ORDER BY agent_name COLLATE "C"),
                              array_agg(usage_count ORDER BY agent_name COLLATE "C"),
                              array_agg((extract(epoch FROM first_used_at) * 1000000)::bigint
                                        ORDER BY agent_name COLLATE "C"),
                              array_agg((extract(epoch FROM last_used_at) * 1000000)::bigint
                                        ORDER BY agent_name COLLATE "C")) AS data
          FROM pattern_agent_usage GROUP BY pattern_id) a
  FULL JOIN pattern_cooccurrence_merged c ON c.pattern_id = a.pattern_id;
INSERT INTO agent_lists (agent_name, n_patterns, patterns)
SELECT agent_name, count(*),
       pt_list_encode(array_agg(pattern_id::text ORDER BY pattern_id COLLATE "C"),
                      array_agg(usage_count ORDER BY pattern_id COLLATE "C"),
                      array_agg((extract(epoch FROM first_used_at) * 1000000)::bigint
                                ORDER BY pattern_id COLLATE "C"),
                      array_agg((extract(epoch FROM last_used_at) * 1000000)::bigint
                                ORDER BY pattern_id COLLATE "C"))
  FROM pattern_agent_usage GROUP BY agent_name;
INSERT INTO pattern_lists_pending (flush_id, pattern_id, n_agents, agents, n_partners, n_low,
                                   partners)
SELECT flush_id, pattern_id, 0, NULL, n, n_low, data FROM pattern_cooccurrence_pending;

-- What the lists replace.
DROP TABLE pattern_cooccurrence_pending;
DROP TABLE pattern_cooccurrence_merged;
DROP TABLE pattern_agent_usage;
DROP TABLE agent_top_patterns;
ALTER TABLE agent_usage_totals DROP COLUMN IF EXISTS top_floor_count,
                               DROP COLUMN IF EXISTS top_floor_pattern;
-- Functions of earlier migrations that nothing calls any more, or whose parameters changed.
DROP FUNCTION IF EXISTS pt_flush(TEXT, TEXT[], INTEGER[], BIGINT[], BIGINT[], TEXT[], TEXT[],
    BIGINT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[],
    BIGINT[], BIGINT[], TEXT[], INTEGER[], BIGINT[], TEXT[], TEXT[], BYTEA[], INTEGER[],
    BIGINT[], BIGINT[], TEXT[], INTEGER[], INTEGER[], INTEGER[], BYTEA, BOOLEAN);
DROP FUNCTION IF EXISTS pt_cooc_entries(BYTEA, INTEGER);
DROP FUNCTION IF EXISTS pt_cooc_list(TEXT[], BIGINT[], BIGINT[]);
DROP FUNCTION IF EXISTS pt_cooc_varint_hex(NUMERIC);
DROP FUNCTION IF EXISTS pt_agent_top_k();
DROP FUNCTION IF EXISTS pt_beats_floor(BIGINT, TEXT, BIGINT, TEXT);

-- The seed's used_by_agents is no longer written: keeping a sorted array per pattern current
-- cost every flush a rewrite of the array of each pattern that gained an agent. The agents of a
-- pattern are the rows of pattern_agents, and the API answers used_by_agents from them.
UPDATE pattern_lineage_nodes SET used_by_agents = NULL WHERE used_by_agents IS NOT NULL;
COMMENT ON COLUMN pattern_lineage_nodes.used_by_agents IS
    'Not written by patterntrack since migration 014: the agents of a pattern are the rows of '
    'pattern_agents (SELECT agent_name FROM pattern_agents WHERE pattern_id = ...).';
