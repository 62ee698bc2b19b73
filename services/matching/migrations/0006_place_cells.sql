-- Wide disc probes ("which actors within 35 km share these themes and offer this service?") read a GIN index
-- of grid cells instead of the place GiST: around a big city the GiST walked every actor of the box (30,000
-- entries for a 35 km disc around Bordeaux, 13 ms) to keep the few hundred with the right codes; the GIN
-- returns only those (4 ms). Narrow discs stay on the GiST, which is tighter there (store.CELLS_KM).
-- Each actor gets one integer key per theme × (any service, or one of its service types) × grid cell, at two
-- resolutions: 0.1° cells (about 11 × 8 km) for discs up to 40 km, 0.5° beyond.
-- Keys are hashes: a collision only lets an extra row through, as every probe rechecks codes and distance.
CREATE FUNCTION cell_key(theme text, service text, step integer, y integer, x integer) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT hashtext(theme || '/' || service || '/' || step::text || '/' || y::text || '/' || x::text) $$;

-- Its search path is the migration's: index builds and ANALYZE run with pg_catalog alone, where cell_key is not.
CREATE FUNCTION place_keys(themes text[], service_types text[], lat float8, lon float8) RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path FROM CURRENT
    AS $$ SELECT coalesce(array_agg(cell_key(theme, service, step, floor(lat * step)::int, floor(lon * step)::int)), '{}')
          FROM unnest(themes) AS theme, unnest(array_prepend('*', service_types)) AS service,
               (VALUES (10), (2)) AS steps (step)
          WHERE lat IS NOT NULL AND lon IS NOT NULL $$;

-- The keys of every cell that a disc of `radius_km` around (lat, lon) touches, for these themes and one
-- service type ('*': any). The cell of a point inside the disc is computed by the same floor(x * step) as in
-- place_keys, so it is always among them.
CREATE FUNCTION disc_keys(themes text[], service text, lat float8, lon float8, radius_km float8) RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ WITH span AS (
              SELECT CASE WHEN radius_km <= 40 THEN 10 ELSE 2 END AS step,
                     radius_km / 111.19 AS dlat,
                     radius_km / (111.19 * greatest(cos(radians(least(abs(lat) + radius_km / 111.19, 89.9))), 0.01))
                         AS dlon
          )
          SELECT coalesce(array_agg(cell_key(theme, service, step, y, x)), '{}')
          FROM span, unnest(themes) AS theme,
               generate_series(floor((lat - dlat) * step)::int, floor((lat + dlat) * step)::int) AS y,
               generate_series(floor((lon - dlon) * step)::int, floor((lon + dlon) * step)::int) AS x $$;

-- Not partial, so that the planner reads the statistics of its expression (it ignores those of partial
-- indexes); a larger sample, because keys are many and each is rare.
CREATE INDEX actors_place_cells_idx ON actors USING gin (place_keys(themes, service_types, lat, lon));
ALTER INDEX actors_place_cells_idx ALTER COLUMN 1 SET STATISTICS 1000;
