-- Candidate probes ask "which actors near this place share these themes (and offer these services)": the
-- place GiST indexes also hold each actor's theme and service-type codes as integer keys (intarray's GiST
-- operator class), so that the index itself drops the actors that don't match instead of reading their
-- rows (bench/matching.py). Keys are hashes of the codes: a collision only lets an extra row through,
-- every probe rechecks the codes themselves, and a new code in the vocabularies needs no migration.
CREATE FUNCTION match_keys(themes text[], service_types text[]) RETURNS integer[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT ARRAY(SELECT hashtext('theme:' || code) FROM unnest(themes) AS code
                       UNION ALL SELECT hashtext('service:' || code) FROM unnest(service_types) AS code) $$;

DROP INDEX actors_location_idx;
DROP INDEX actors_reach_disc_idx;
CREATE INDEX actors_location_keys_idx ON actors
    USING gist (ll_to_earth(lat, lon), match_keys(themes, service_types) gist__int_ops)
    WHERE status = 'active' AND lat IS NOT NULL;
CREATE INDEX actors_reach_disc_keys_idx ON actors
    USING gist (earth_box(ll_to_earth(lat, lon), reach_radius_km * 1000), match_keys(themes, service_types) gist__int_ops)
    WHERE status = 'active' AND reach_radius_km > 0 AND lat IS NOT NULL;
-- The code probes (perimeter, activity codes, national activities) intersect service types in the index too.
DROP INDEX actors_territories_themes_idx;
DROP INDEX actors_reach_themes_idx;
DROP INDEX actors_national_idx;
CREATE INDEX actors_territories_codes_idx ON actors USING gin (territories, themes, service_types)
    WHERE status = 'active';
CREATE INDEX actors_reach_codes_idx ON actors USING gin (reach, themes, service_types)
    WHERE status = 'active' AND reach <> '{}';
CREATE INDEX actors_national_codes_idx ON actors USING gin (themes, service_types) WHERE status = 'active' AND national;
