-- The text door (issue 23): an actor becomes a candidate of a need, whatever its themes, when its own words
-- (description and activities, never its name) name one of the need's concepts — the synonym groups of
-- services/contracts/synonyms.py. The concepts are computed in Python (store.upsert_actor, store.insert_need),
-- so that the synonyms stay in the application and not in PostgreSQL dictionary files, and stored as short
-- arrays found with an array overlap, like themes.
-- NULL: not computed yet. SQL cannot compute them, so rows from before this migration keep NULL until they are
-- written again: `maillage rebuild matching` re-applies an actor whose concepts are NULL even at the same
-- version (store.upsert_actor), and an open need with NULL concepts is read by every re-matching (few are open).
ALTER TABLE actors ADD COLUMN concepts text[];
ALTER TABLE needs ADD COLUMN concepts text[];
-- The door's probe: concepts within the need's perimeter territories (its radius part reads the place GiST).
CREATE INDEX actors_territories_concepts_idx ON actors USING gin (territories, concepts) WHERE status = 'active';
-- Re-matching: the open needs naming one of a new actor's concepts.
CREATE INDEX needs_open_concepts_idx ON needs USING gin (concepts) WHERE status = 'published';
