-- Every service's idempotency keys: a creating request sent with `Idempotency-Key` is stored with its first
-- answer in the transaction that creates, so that a retry (even after a timeout that hid a commit) gets that
-- answer instead of a second creation. Kept MAILLAGE_IDEMPOTENCY_RETENTION_HOURS (services/common/idempotency.py).
CREATE TABLE idempotency_keys (
    scope       text        NOT NULL,  -- the caller: a key is one caller's, never shared
    key         text        NOT NULL,
    fingerprint text        NOT NULL,  -- the request the key was first used for: method, path and body
    status_code integer     NOT NULL,
    body        jsonb       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
-- Retention purge.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
