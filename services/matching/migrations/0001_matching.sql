-- Matching: the actor replica, needs, matches, and the notifications it sends (e-mails, webhooks).

CREATE FUNCTION f_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$;

CREATE TEXT SEARCH CONFIGURATION fr_unaccent (COPY = pg_catalog.french);
ALTER TEXT SEARCH CONFIGURATION fr_unaccent
    ALTER MAPPING FOR hword, hword_part, word, numword, numhword, hword_numpart WITH unaccent, french_stem;

-- What matching needs of each actor, from the directory's events (applied only when newer).
CREATE TABLE actors (
    id              uuid PRIMARY KEY,
    version         integer          NOT NULL,
    name            text             NOT NULL,
    description     text             NOT NULL DEFAULT '',
    kind            text             NOT NULL,
    themes          text[]           NOT NULL DEFAULT '{}',  -- its own and its activities' themes
    service_types   text[]           NOT NULL DEFAULT '{}',  -- idem
    activities      jsonb            NOT NULL DEFAULT '[]',
    commune_code    text             NOT NULL,
    territories     text[]           NOT NULL DEFAULT '{}',  -- COM, EPCI, DEP, REG of its commune
    reach           text[]           NOT NULL DEFAULT '{}',  -- codes listed by its activities' areas
    reach_radius_km double precision NOT NULL DEFAULT 0,     -- largest radius of its activities
    national        boolean          NOT NULL DEFAULT false,  -- one activity covers all of France
    lat             double precision,
    lon             double precision,
    qpv_code        text,
    legal_form      text,
    status          text             NOT NULL DEFAULT 'active',
    updated_at      timestamptz      NOT NULL DEFAULT now(),
    search          tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('fr_unaccent', name), 'A')
        || setweight(to_tsvector('fr_unaccent', description), 'B')
    ) STORED
);
CREATE INDEX actors_themes_idx ON actors USING gin (themes) WHERE status = 'active';
CREATE INDEX actors_territories_idx ON actors USING gin (territories) WHERE status = 'active';
CREATE INDEX actors_reach_idx ON actors USING gin (reach) WHERE status = 'active' AND reach <> '{}';
CREATE INDEX actors_location_idx ON actors USING gist (ll_to_earth(lat, lon))
    WHERE status = 'active' AND lat IS NOT NULL;
-- Radius activities: the disc each one covers, so that "which actors reach this place" is an index probe.
CREATE INDEX actors_reach_disc_idx ON actors USING gist (earth_box(ll_to_earth(lat, lon), reach_radius_km * 1000))
    WHERE status = 'active' AND reach_radius_km > 0 AND lat IS NOT NULL;
CREATE INDEX actors_national_idx ON actors USING gin (themes) WHERE status = 'active' AND national;

CREATE TABLE needs (
    id                  uuid PRIMARY KEY,
    version             integer          NOT NULL DEFAULT 1,
    owner_id            uuid             NOT NULL,
    title               text             NOT NULL,
    description         text             NOT NULL DEFAULT '',
    kind                text             NOT NULL,
    themes              text[]           NOT NULL DEFAULT '{}',
    service_types       text[]           NOT NULL DEFAULT '{}',
    commune_code        text             NOT NULL,
    lat                 double precision NOT NULL,
    lon                 double precision NOT NULL,
    perimeter           text[]           NOT NULL DEFAULT '{}',
    perimeter_radius_km double precision,
    eligible_kinds      text[]           NOT NULL DEFAULT '{}',
    budget_min          numeric(14, 2),
    budget_max          numeric(14, 2),
    deadline            timestamptz      NOT NULL,
    qpv_priority        boolean          NOT NULL DEFAULT false,
    status              text             NOT NULL DEFAULT 'published',
    closing_comment     text,
    created_at          timestamptz      NOT NULL DEFAULT now(),
    updated_at          timestamptz      NOT NULL DEFAULT now(),
    search              tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('fr_unaccent', title), 'A')
        || setweight(to_tsvector('fr_unaccent', description), 'B')
    ) STORED
);
CREATE INDEX needs_owner_idx ON needs (owner_id, created_at DESC);
CREATE INDEX needs_open_idx ON needs USING gin (themes) WHERE status = 'published';
CREATE INDEX needs_deadline_idx ON needs (deadline) WHERE status = 'published';

CREATE TABLE matches (
    id               uuid PRIMARY KEY,
    need_id          uuid        NOT NULL REFERENCES needs (id),
    actor_id         uuid        NOT NULL,
    score            real        NOT NULL,
    reasons          jsonb       NOT NULL DEFAULT '[]',
    status           text        NOT NULL,  -- proposed notified viewed interested declined selected withdrawn
    response_comment text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (need_id, actor_id)
);
CREATE INDEX matches_actor_idx ON matches (actor_id, created_at DESC);

-- Partners' webhook endpoints, their deliveries (one per endpoint and event: its id is the webhook-id)
-- and every attempt.
CREATE TABLE webhook_endpoints (
    id          uuid PRIMARY KEY,
    owner       text        NOT NULL,  -- the subject of the partner that registered it
    url         text        NOT NULL,
    event_types text[]      NOT NULL,
    description text        NOT NULL DEFAULT '',
    secret      text        NOT NULL,
    status      text        NOT NULL DEFAULT 'active',  -- active | disabled
    disabled_reason text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_types_idx ON webhook_endpoints USING gin (event_types) WHERE status = 'active';

CREATE TABLE webhook_deliveries (
    id              text PRIMARY KEY,  -- msg_<uuid5(endpoint, event id)>: the same on every retry
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    event_id        text        NOT NULL,
    event_type      text        NOT NULL,
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',  -- pending delivered failed abandoned
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at DESC);

CREATE TABLE webhook_attempts (
    delivery_id text        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error       text,
    duration_ms real        NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- E-mails to send (at least once; the Message-ID is stable across retries).
CREATE TABLE emails (
    id              uuid PRIMARY KEY,  -- uuid5(event id, recipient kind, recipient actor)
    recipient_actor uuid        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',  -- pending sent no_address abandoned
    to_address      text,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX emails_due_idx ON emails (next_attempt_at) WHERE status = 'pending';

-- Wake the senders as soon as something is due.
CREATE FUNCTION notify_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('maillage_deliveries', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
CREATE TRIGGER webhook_deliveries_notify AFTER INSERT ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notify_deliveries();
CREATE TRIGGER emails_notify AFTER INSERT ON emails
    FOR EACH STATEMENT EXECUTE FUNCTION notify_deliveries();
