-- The shared-theme probes inside a need's perimeter ask "which actors of these territories have all (or some) of
-- these themes and this service type?". The multi-column GIN of migration 0005 answered by intersecting whole
-- posting lists — a territory's with each theme's and service type's — 4 ms for Paris at 1,000,000 actors to
-- find 40 of them (bench/matching.py). Like the grid cells of migration 0006, each actor here gets one integer key
-- per theme × (any service, or one of its service types) × territory of its commune, so that a probe reads only
-- the posting lists of the need's first theme (or of each, for "some"), service type and territories. Keys are
-- hashes: a collision only lets an extra row through, and every probe rechecks territories and codes.
CREATE FUNCTION territory_cell_key(theme text, service text, territory text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT hashtext(theme || '/' || service || '/' || territory) $$;

-- Its search path is the migration's: index builds and ANALYZE run with pg_catalog alone (see migration 0006).
CREATE FUNCTION territory_cells(themes text[], service_types text[], territories text[]) RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path FROM CURRENT
    AS $$ SELECT coalesce(array_agg(territory_cell_key(theme, service, territory)), '{}')
          FROM unnest(themes) AS theme, unnest(array_prepend('*', service_types)) AS service,
               unnest(territories) AS territory $$;

-- The keys a probe asks for: these themes, one service type ('*': any), these territories.
CREATE FUNCTION asked_territory_cells(themes text[], service text, territories text[]) RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path FROM CURRENT
    AS $$ SELECT coalesce(array_agg(territory_cell_key(theme, service, territory)), '{}')
          FROM unnest(themes) AS theme, unnest(territories) AS territory $$;

-- Not partial, so that the planner reads the statistics of its expression (see migration 0006).
CREATE INDEX actors_territory_cells_idx ON actors USING gin (territory_cells(themes, service_types, territories));
ALTER INDEX actors_territory_cells_idx ALTER COLUMN 1 SET STATISTICS 1000;
-- The same keys over the territories that an actor's activities cover (`reach`), for the probe "which actors'
-- activities cover the need's place?" (1.8 ms on the multi-column GIN for 17 actors around Paris).
CREATE INDEX actors_reach_cells_idx ON actors USING gin (territory_cells(themes, service_types, reach));
ALTER INDEX actors_reach_cells_idx ALTER COLUMN 1 SET STATISTICS 1000;
