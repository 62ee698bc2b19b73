-- The door probes' discs (issue 23) on grid cells, like the wide disc probes of migration 0006: the text door's
-- radius probe read every actor of the need's disc from the place GiST, whose keys do not hold concepts, and
-- the related-theme door's walked the GiST too (bench/matching.py, 100,000 actors: p99 17 ms and 8 ms for a
-- radius need; linear in the actors of the disc, so ten times that at 1,000,000). The concepts' cells reuse
-- place_keys with the concepts as codes and no service type: one key per concept × cell, at both resolutions.
-- Not partial, for the statistics of its expression (see migration 0006); NULL concepts give no key.
CREATE INDEX actors_concept_cells_idx ON actors USING gin (place_keys(concepts, '{}'::text[], lat, lon));
ALTER INDEX actors_concept_cells_idx ALTER COLUMN 1 SET STATISTICS 1000;
