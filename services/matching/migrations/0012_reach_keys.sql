-- The probes anywhere ask "which actors active in the need's commune's territories (their activities' reach) have
-- these themes?" as they ask it of the actors' own territories since migration 0009: on one integer key per
-- (territory, code) pair, so that the index reads only the pairs asked for. The (reach, themes, service types)
-- GIN intersected each territory's posting list with each theme's (0.9 ms of every probe anywhere at 1,000,000
-- actors, bench/matching.py). Not partial, so that the planner reads the statistics of its expression (most
-- actors have no reach: their empty key array is one entry). Without fastupdate, as migration 0011 explains.
CREATE INDEX actors_reach_code_keys_idx ON actors
    USING gin (territory_keys(reach, match_keys(themes, service_types))) WITH (fastupdate = off);
-- No probe reads these any more (the territories branch uses migration 0009's keys): every actor written updated
-- them for nothing.
DROP INDEX actors_territories_codes_idx;
DROP INDEX actors_reach_codes_idx;
