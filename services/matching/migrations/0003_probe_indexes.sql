-- The perimeter and activity-code probes filter on territory codes and themes together: one GIN index
-- over both columns intersects the two inside the index, so only actors matching both are read
-- (a Paris need no longer rechecks every actor of Paris for its themes).
DROP INDEX actors_territories_idx;
DROP INDEX actors_reach_idx;
CREATE INDEX actors_territories_themes_idx ON actors USING gin (territories, themes) WHERE status = 'active';
CREATE INDEX actors_reach_themes_idx ON actors USING gin (reach, themes) WHERE status = 'active' AND reach <> '{}';
