-- The Kafka cluster a service's outbox was published to (one row, written by the active relay). A broker
-- answering with another cluster id holds none of the rows acknowledged before: the relay then publishes the
-- retained outbox again (services/common/outbox.py, OutboxRelay._same_cluster).
CREATE TABLE outbox_broker (
    only_row    boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    cluster_id  text        NOT NULL,
    seen_since  timestamptz NOT NULL DEFAULT now()  -- when the relay first published to it
);
