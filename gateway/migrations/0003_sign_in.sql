-- Signing people in to the console: one-time links sent by e-mail, the requests that rate-limit them, and the
-- console's sessions (each a credential, so that revoking it refuses it on every replica).

-- A link's token is never stored, only its SHA-256: a copy of this table signs nobody in.
CREATE TABLE sign_in_links (
    id             uuid        PRIMARY KEY,
    token_hash     bytea       NOT NULL UNIQUE,
    email          text        NOT NULL,
    person_id      uuid,                          -- the person of the address when the link was sent
    claim_ids      uuid[]      NOT NULL DEFAULT '{}', -- claims the address made, confirmed when it signs in
    purpose        text        NOT NULL DEFAULT 'sign-in' CHECK (purpose IN ('sign-in', 'invitation')),
    next_path      text,
    requested_from text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX sign_in_links_created_idx ON sign_in_links (created_at);

-- Every request of a link, known address or not (the answer is the same): the address only as a keyed hash.
CREATE TABLE sign_in_requests (
    address_hash   bytea       NOT NULL,
    requested_from text,
    requested_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_requests_address_idx ON sign_in_requests (address_hash, requested_at);
CREATE INDEX sign_in_requests_from_idx ON sign_in_requests (requested_from, requested_at);
CREATE INDEX sign_in_requests_at_idx ON sign_in_requests (requested_at);

-- When a session was last used (its idle lifetime; the absolute one is its credential's expiry). Kept beside
-- the credential, not in it: every change of a credential row is notified to every replica.
CREATE TABLE console_sessions (
    credential_id  uuid        PRIMARY KEY REFERENCES credentials (id) ON DELETE CASCADE,
    person_id      uuid        NOT NULL,
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_sessions_person_idx ON console_sessions (person_id);
-- A person's open sessions, revoked when it leaves an actor.
CREATE INDEX credentials_open_subject_idx ON credentials (subject, actor_id) WHERE revoked_at IS NULL;
