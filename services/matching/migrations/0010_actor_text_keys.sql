-- The comparison keys of each actor's words (services.contracts.synonyms.text_keys: the synonym groups its texts
-- name and their content words), computed in Python when its state is applied (store.upsert_actor), so that
-- scoring a candidate compares sets instead of reading and splitting its texts again — that was 40 % of the
-- Python time of a match over some 80 candidates (bench/matching.py). keys_version is the vocabulary's
-- fingerprint (synonyms.KEYS_VERSION) they were computed with: keys of another vocabulary, or NULL (rows from
-- before this migration), are not read, and scoring computes them from the texts until the actor is written again
-- (`maillage rebuild matching` re-applies such an actor even at the same version).
ALTER TABLE actor_texts ADD COLUMN name_keys text[], ADD COLUMN body_keys text[], ADD COLUMN keys_version text;
