-- The text door's radius probe (issue 23), like the theme probes of migration 0005: the place GiST also holds
-- each actor's concepts as integer keys, so that reading a disc nearest first drops the actors that do not name
-- the need's concepts in the index. Without it the door read every actor of the disc before keeping the nearest
-- (bench/matching.py, 100,000 actors: 18 ms for a 20 km disc where 900 actors stand). Keys are hashes: a
-- collision only lets an extra row through, and the probe rechecks the concepts.
CREATE INDEX actors_location_concepts_idx ON actors
    USING gist (ll_to_earth(lat, lon), match_keys(concepts, '{}'::text[]) gist__int_ops)
    WHERE status = 'active' AND lat IS NOT NULL AND concepts IS NOT NULL;
