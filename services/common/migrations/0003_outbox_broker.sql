-- What the relay knows of the broker, to notice one that lost what it had acknowledged (issue 21).

-- The Kafka cluster a service's outbox was published to (one row, written by the active relay). A broker
-- answering with another cluster id holds none of the rows acknowledged before: the relay then publishes the
-- retained outbox again (services/common/outbox.py, OutboxRelay._same_cluster).
CREATE TABLE outbox_broker (
    only_row    boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    cluster_id  text        NOT NULL,
    seen_since  timestamptz NOT NULL DEFAULT now()  -- when the relay first published to it
);

-- The last offset the broker acknowledged to the relay in each partition. Offsets only grow while a partition's
-- log exists: a lower one acknowledged later means the log was lost (a topic recreated, a volume lost and
-- formatted again under the same cluster id), also for a relay that was not running when it happened.
CREATE TABLE outbox_partitions (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    last_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
