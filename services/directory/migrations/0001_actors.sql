-- The directory's actors, with the indexes its searches need.

-- unaccent() is only STABLE; index expressions need an IMMUTABLE wrapper bound to its dictionary.
CREATE FUNCTION f_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$;

-- French full text, accent-insensitive.
CREATE TEXT SEARCH CONFIGURATION fr_unaccent (COPY = pg_catalog.french);
ALTER TEXT SEARCH CONFIGURATION fr_unaccent
    ALTER MAPPING FOR hword, hword_part, word WITH unaccent, french_stem;

CREATE TABLE actors (
    id             uuid PRIMARY KEY,
    version        integer     NOT NULL DEFAULT 1,
    name           text        NOT NULL,
    description    text        NOT NULL DEFAULT '',
    kind           text        NOT NULL,
    legal_form     text,
    siret          text,
    rna            text,
    local_register text,
    source_id      text,
    themes         text[]      NOT NULL DEFAULT '{}',
    service_types  text[]      NOT NULL DEFAULT '{}',
    activities     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    street         text,
    postal_code    text,
    commune_code   text        NOT NULL,
    commune_name   text,
    departement    text        NOT NULL,
    region         text        NOT NULL,
    epci           text,
    territories    text[]      NOT NULL DEFAULT '{}',
    lat            double precision,
    lon            double precision,
    qpv_code       text,
    website        text,
    networks       text[]      NOT NULL DEFAULT '{}',
    contact        jsonb,
    status         text        NOT NULL DEFAULT 'active',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    search         tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('fr_unaccent', name), 'A')
        || setweight(to_tsvector('fr_unaccent', coalesce(description, '')), 'B')
    ) STORED,
    CHECK ((lat IS NULL) = (lon IS NULL))
);

-- Identifiers: one actor each (409 names the holder).
CREATE UNIQUE INDEX actors_siret_key ON actors (siret) WHERE siret IS NOT NULL;
CREATE UNIQUE INDEX actors_rna_key ON actors (rna) WHERE rna IS NOT NULL;
CREATE UNIQUE INDEX actors_local_register_key ON actors (local_register) WHERE local_register IS NOT NULL;
CREATE UNIQUE INDEX actors_source_id_key ON actors (source_id) WHERE source_id IS NOT NULL;

-- Search filters.
CREATE INDEX actors_search_idx ON actors USING gin (search);
CREATE INDEX actors_name_trgm_idx ON actors USING gin (f_unaccent(lower(name)) gin_trgm_ops);
CREATE INDEX actors_themes_idx ON actors USING gin (themes);
CREATE INDEX actors_territories_idx ON actors USING gin (territories);
CREATE INDEX actors_location_idx ON actors USING gist (ll_to_earth(lat, lon)) WHERE lat IS NOT NULL;
CREATE INDEX actors_name_order_idx ON actors (lower(name), id);
CREATE INDEX actors_kind_idx ON actors (kind);
-- Snapshot paging by watermark.
CREATE INDEX actors_updated_idx ON actors (updated_at, id);
