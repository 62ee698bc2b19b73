-- Candidate probes read a few columns of thousands of actors and the text of a few hundred: the text
-- (name and description for full-text rank, activities for the coverage check) moves to its own table,
-- so that the replica's rows stay narrow and stay in memory (bench/matching.py measures the effect).
CREATE TABLE actor_texts (
    id          uuid PRIMARY KEY,
    name        text  NOT NULL,
    description text  NOT NULL DEFAULT '',
    activities  jsonb NOT NULL DEFAULT '[]',
    search      tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('fr_unaccent', name), 'A')
        || setweight(to_tsvector('fr_unaccent', description), 'B')
    ) STORED
);
INSERT INTO actor_texts (id, name, description, activities) SELECT id, name, description, activities FROM actors;
ALTER TABLE actors DROP COLUMN search, DROP COLUMN description, DROP COLUMN activities;
