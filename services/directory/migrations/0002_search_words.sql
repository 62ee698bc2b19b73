-- Typo tolerance: the words the directory knows, so that a misspelt query word is corrected
-- to its nearest known word (pg_trgm on a small table) before the full-text search.

-- Words mixing letters and digits (names like "Éco25") are unaccented too.
ALTER TEXT SEARCH CONFIGURATION fr_unaccent
    ALTER MAPPING FOR numword, numhword, hword_numpart WITH unaccent, simple;
UPDATE actors SET name = name;  -- recompute the stored search vectors

CREATE TABLE search_words (word text PRIMARY KEY);
CREATE INDEX search_words_trgm_idx ON search_words USING gist (word gist_trgm_ops);

CREATE FUNCTION search_words_collect() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_words (word)
    SELECT DISTINCT w
    FROM new_rows,
         unnest(tsvector_to_array(to_tsvector('simple', f_unaccent(lower(name || ' ' || description))))) AS w
    WHERE length(w) >= 3 AND w !~ '^[0-9]+$'
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER actors_words_on_insert AFTER INSERT ON actors
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_words_collect();
CREATE TRIGGER actors_words_on_update AFTER UPDATE ON actors
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_words_collect();

INSERT INTO search_words (word)
SELECT DISTINCT w
FROM actors, unnest(tsvector_to_array(to_tsvector('simple', f_unaccent(lower(name || ' ' || description))))) AS w
WHERE length(w) >= 3 AND w !~ '^[0-9]+$'
ON CONFLICT DO NOTHING;
