-- The doors' territory probes (issue 23) ask "which actors of these territories have one of these codes?". The
-- multi-column GIN indexes of migrations 0005 and 0007 answered by intersecting whole posting lists: a
-- territory's (30,000 actors for Paris at 1,000,000) with each code's (up to 150,000 for a theme), 5 to 18 ms
-- before the probe kept its first 200 rows (bench/matching.py). Here each actor gets one integer key per
-- (territory, code) pair, so that the index reads only the pairs asked for. Keys are hashes of the territory and
-- of match_keys' code key: a collision only lets an extra row through, and every probe rechecks territories and
-- codes.
CREATE FUNCTION territory_keys(territories text[], keys integer[]) RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT coalesce(array_agg(hashtext(territory || '/' || key::text)), '{}')
          FROM unnest(territories) AS territory, unnest(keys) AS key $$;

-- Not partial, so that the planner reads the statistics of their expressions (it ignores those of partial
-- indexes, see migration 0006).
CREATE INDEX actors_territory_code_keys_idx ON actors
    USING gin (territory_keys(territories, match_keys(themes, service_types)));
CREATE INDEX actors_territory_concept_keys_idx ON actors
    USING gin (territory_keys(territories, match_keys(concepts, '{}'::text[])));
-- The text door's territory probe was the only reader of this one.
DROP INDEX actors_territories_concepts_idx;
