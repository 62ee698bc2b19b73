-- Every service's messaging tables: the transactional outbox and the consumer inbox.

CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    ce_id       uuid        NOT NULL UNIQUE,
    ce_type     text        NOT NULL,
    ce_source   text        NOT NULL,
    ce_time     timestamptz NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    data        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at     timestamptz
);
-- The relay reads only what is waiting, in id order.
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
-- Retention purge and `maillage replay --since`.
CREATE INDEX outbox_created_at_idx ON outbox (created_at);

-- Wake the relay once per writing statement; it also polls, so a lost wake-up only delays.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('maillage_outbox', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Idempotent consumers: one row per event a consumer has applied, written with its effects.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    ce_source    text        NOT NULL,
    ce_id        text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, ce_source, ce_id)
);
CREATE INDEX processed_events_processed_at_idx ON processed_events (processed_at);
