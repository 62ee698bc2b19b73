-- Events: the organizers' replica, territorial events, their registrations and the e-mails to persons.

CREATE FUNCTION f_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$;

CREATE TEXT SEARCH CONFIGURATION fr_unaccent (COPY = pg_catalog.french);
ALTER TEXT SEARCH CONFIGURATION fr_unaccent
    ALTER MAPPING FOR hword, hword_part, word, numword, numhword, hword_numpart WITH unaccent, french_stem;

-- What events needs of each actor, from the directory's events (applied only when newer).
CREATE TABLE actors (
    id           uuid PRIMARY KEY,
    version      integer     NOT NULL,
    name         text        NOT NULL,
    kind         text        NOT NULL,
    commune_code text        NOT NULL,
    status       text        NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE events (
    id                uuid PRIMARY KEY,
    version           integer          NOT NULL DEFAULT 1,
    title             text             NOT NULL,
    description       text             NOT NULL DEFAULT '',
    kind              text             NOT NULL,
    themes            text[]           NOT NULL DEFAULT '{}',
    organizer_ids     uuid[]           NOT NULL,
    starts_at         timestamptz      NOT NULL,
    ends_at           timestamptz      NOT NULL,
    timezone          text             NOT NULL DEFAULT 'Europe/Paris',
    address           text,
    commune_code      text,
    territories       text[]           NOT NULL DEFAULT '{}',  -- COM, EPCI, DEP, REG of its commune
    lat               double precision,
    lon               double precision,
    online_url        text,
    capacity          integer CHECK (capacity >= 0),
    registration_mode text             NOT NULL,  -- open | approval | closed
    status            text             NOT NULL DEFAULT 'draft',  -- draft | published | cancelled
    cancel_reason     text,
    confirmed         integer          NOT NULL DEFAULT 0,
    waitlisted        integer          NOT NULL DEFAULT 0,
    pending           integer          NOT NULL DEFAULT 0,
    created_by        text             NOT NULL,
    created_at        timestamptz      NOT NULL DEFAULT now(),
    updated_at        timestamptz      NOT NULL DEFAULT now(),
    search            tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('fr_unaccent', title), 'A')
        || setweight(to_tsvector('fr_unaccent', description), 'B')
    ) STORED,
    CHECK (ends_at > starts_at),
    CHECK (capacity IS NULL OR confirmed <= capacity)  -- the last guard against overbooking
);
-- Public searches read published events by date; the geographic one narrows by a box first.
CREATE INDEX events_starts_idx ON events (starts_at, id) WHERE status <> 'draft';
CREATE INDEX events_location_idx ON events USING gist (ll_to_earth(lat, lon), starts_at)
    WHERE status <> 'draft' AND lat IS NOT NULL;
CREATE INDEX events_themes_idx ON events USING gin (themes) WHERE status <> 'draft';
CREATE INDEX events_territories_idx ON events USING gin (territories) WHERE status <> 'draft';
CREATE INDEX events_organizers_idx ON events USING gin (organizer_ids);
CREATE INDEX events_search_idx ON events USING gin (search) WHERE status <> 'draft';

CREATE TABLE registrations (
    id               uuid PRIMARY KEY,
    event_id         uuid        NOT NULL REFERENCES events (id),
    seq              bigserial   NOT NULL,  -- arrival order: the waiting list is promoted in it
    participant_kind text        NOT NULL CHECK (participant_kind IN ('actor', 'person')),
    actor_id         uuid,
    person_name      text,
    person_email     text,       -- lower-cased; NULL once erased
    erased_at        timestamptz,
    status           text        NOT NULL,  -- pending | confirmed | waitlisted | cancelled | rejected
    comment          text,
    created_by       text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((participant_kind = 'actor') = (actor_id IS NOT NULL))
);
-- One live registration per participant and event (a cancelled one may register again).
CREATE UNIQUE INDEX registrations_actor_once ON registrations (event_id, actor_id)
    WHERE actor_id IS NOT NULL AND status NOT IN ('cancelled', 'rejected');
CREATE UNIQUE INDEX registrations_person_once ON registrations (event_id, person_email)
    WHERE person_email IS NOT NULL AND status NOT IN ('cancelled', 'rejected');
CREATE INDEX registrations_event_idx ON registrations (event_id, seq);
CREATE INDEX registrations_waitlist_idx ON registrations (event_id, seq) WHERE status = 'waitlisted';
CREATE INDEX registrations_email_idx ON registrations (person_email) WHERE person_email IS NOT NULL;

-- E-mails to persons, written in the transaction of the change they tell about; sent at least once.
CREATE TABLE emails (
    id              uuid PRIMARY KEY,  -- uuid5(registration, what happened, its sequence): the Message-ID
    registration_id uuid        NOT NULL REFERENCES registrations (id),
    subject         text        NOT NULL,
    body            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending',  -- pending recorded sent erased abandoned
    to_address      text,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX emails_due_idx ON emails (next_attempt_at) WHERE status = 'pending';
CREATE INDEX emails_registration_idx ON emails (registration_id);

-- Where an admitted registration goes: a seat while some are free and nobody waits, else the waiting list.
CREATE FUNCTION seat_for(ev events) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN ev.capacity IS NULL OR (ev.confirmed < ev.capacity AND ev.waitlisted = 0)
                THEN 'confirmed' ELSE 'waitlisted' END
$$;

-- One registration in one round trip: the event row is locked only for this call and the caller's commit,
-- so a burst on one event is serialised by the database, not by the API's round trips.
-- outcome: pending | confirmed | waitlisted | no_event | not_published | closed | started | duplicate
CREATE FUNCTION register_participant(
    p_event uuid, p_id uuid, p_actor uuid, p_name text, p_email text, p_comment text, p_created_by text,
    OUT outcome text, OUT registration registrations, OUT place_in_line integer
) LANGUAGE plpgsql AS $$
DECLARE
    ev events;
BEGIN
    SELECT * INTO ev FROM events WHERE id = p_event FOR UPDATE;
    IF NOT FOUND THEN outcome := 'no_event'; RETURN; END IF;
    IF ev.status <> 'published' THEN outcome := 'not_published'; RETURN; END IF;
    IF ev.registration_mode = 'closed' THEN outcome := 'closed'; RETURN; END IF;
    IF ev.starts_at <= now() THEN outcome := 'started'; RETURN; END IF;
    outcome := CASE WHEN ev.registration_mode = 'approval' THEN 'pending' ELSE seat_for(ev) END;
    INSERT INTO registrations (id, event_id, participant_kind, actor_id, person_name, person_email, status,
                               comment, created_by)
    VALUES (p_id, p_event, CASE WHEN p_actor IS NULL THEN 'person' ELSE 'actor' END, p_actor, p_name, p_email,
            outcome, p_comment, p_created_by)
    ON CONFLICT DO NOTHING
    RETURNING * INTO registration;
    IF NOT FOUND THEN outcome := 'duplicate'; RETURN; END IF;
    UPDATE events SET confirmed = confirmed + (outcome = 'confirmed')::int,
                      waitlisted = waitlisted + (outcome = 'waitlisted')::int,
                      pending = pending + (outcome = 'pending')::int
    WHERE id = p_event;
    IF outcome = 'waitlisted' THEN place_in_line := ev.waitlisted + 1; END IF;
END
$$;
