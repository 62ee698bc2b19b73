-- Partner credentials issued by admins: the token's jti is the row id, so revoking it refuses the token at once.
CREATE TABLE credentials (
    id                    uuid        PRIMARY KEY,
    name                  text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role                  text        NOT NULL CHECK (role IN ('admin', 'partner', 'collectivity', 'actor')),
    subject               text        NOT NULL,
    actor_id              text,
    scopes                text[]      NOT NULL DEFAULT '{}',
    rate_limit_per_minute int         CHECK (rate_limit_per_minute > 0),
    issued_by             text        NOT NULL,
    issued_at             timestamptz NOT NULL DEFAULT now(),
    expires_at            timestamptz NOT NULL,
    revoked_at            timestamptz,
    revoked_by            text
);

CREATE INDEX credentials_issued_at_idx ON credentials (issued_at DESC);
