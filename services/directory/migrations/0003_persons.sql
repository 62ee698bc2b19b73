-- The people who act for actors (the console's members), the actors they belong to, and claims of actors by
-- their registered contact address. Personal data (e-mail, name) stays here: no event carries it.

-- How an actor came to be: staff-registered and imported actors may be claimed by their contact address,
-- self-registered ones may not (rules.claimable). Existing rows: an imported one carries its source's id.
ALTER TABLE actors ADD COLUMN origin text;
UPDATE actors SET origin = CASE WHEN source_id IS NOT NULL THEN 'import' ELSE 'staff' END;
ALTER TABLE actors ALTER COLUMN origin SET NOT NULL;
ALTER TABLE actors ADD CONSTRAINT actors_origin_check CHECK (origin IN ('staff', 'partner', 'import', 'self'));

CREATE TABLE persons (
    id         uuid PRIMARY KEY,
    email      text        NOT NULL,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- One person per address, whatever its case.
CREATE UNIQUE INDEX persons_email_key ON persons (lower(email));

CREATE TABLE memberships (
    person_id  uuid        NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    actor_id   uuid        NOT NULL REFERENCES actors (id),
    role       text        NOT NULL CHECK (role IN ('member', 'admin')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (person_id, actor_id)
);
CREATE INDEX memberships_actor_idx ON memberships (actor_id);

CREATE TABLE claims (
    id         uuid PRIMARY KEY,
    actor_id   uuid        NOT NULL REFERENCES actors (id),
    email      text        NOT NULL,
    status     text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'void')),
    created_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz
);
CREATE INDEX claims_pending_idx ON claims (actor_id) WHERE status = 'pending';
CREATE INDEX claims_email_idx ON claims (lower(email));
