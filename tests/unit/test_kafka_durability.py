"""What a production user expects of the producer and the topics: acks=all, idempotence by setting, a majority in sync."""

from __future__ import annotations

import pytest

from services.common.kafka import new_producer
from services.common.settings import Settings
from services.contracts.topics import min_insync_replicas, topic_config


class TestTopicDurability:
    @pytest.mark.parametrize(("replicas", "in_sync"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3)])
    def test_a_write_is_acknowledged_once_a_majority_of_replicas_hold_it(self, replicas: int, in_sync: int) -> None:
        assert min_insync_replicas(replicas) == in_sync
        assert topic_config(replicas) == {"min.insync.replicas": str(in_sync)}

    def test_a_topic_without_replicas_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least one replica"):
            min_insync_replicas(0)

    def test_the_replication_setting_is_at_least_one(self) -> None:
        with pytest.raises(ValueError, match="topic_replication"):
            Settings(_env_file=None, topic_replication=0)


class TestProducer:
    def test_idempotent_by_default_as_production_kafka_expects(self) -> None:
        assert Settings.model_fields["kafka_idempotent_producer"].default is True

    @pytest.mark.parametrize("idempotent", [True, False])
    async def test_it_waits_for_every_in_sync_replica_and_follows_the_setting(
        self, unit_settings: Settings, idempotent: bool
    ) -> None:
        producer = new_producer(unit_settings.model_copy(update={"kafka_idempotent_producer": idempotent}))
        assert producer._sender._acks == -1  # acks=all
        assert (producer._txn_manager is not None) is idempotent

    def test_the_setting_reads_its_variable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("MAILLAGE_KAFKA_IDEMPOTENT_PRODUCER", "false")
        assert Settings(_env_file=None).kafka_idempotent_producer is False
