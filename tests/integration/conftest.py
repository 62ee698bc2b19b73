"""Integration fixtures shared across modules."""

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.common.apache_kafka import ApacheKafkaBroker
from services.common.embedded import EmbeddedBroker, free_port
from services.common.settings import Settings
from tests.conftest import IDEMPOTENT_PRODUCER, ON_APACHE_KAFKA
from tests.integration.browser_fixtures import browser, new_page
from tests.integration.directory_fixtures import directory
from tests.integration.events_fixtures import events, gateway_port
from tests.integration.gateway_fixtures import gateway, gateway_settings
from tests.integration.matching_fixtures import matching, own_matching

__all__ = [
    "browser",
    "directory",
    "events",
    "gateway",
    "gateway_port",
    "gateway_settings",
    "matching",
    "new_page",
    "own_matching",
]


@pytest.fixture
async def own_broker() -> AsyncIterator[EmbeddedBroker]:
    """A broker of the test's own, which it may stop, and whose consumer groups no other test shares."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class PrivateBroker:
    """A broker of the test's own, of the kind the run tests (Tansu; Apache Kafka with MAILLAGE_TEST_BROKER=kafka).

    `start(fresh=True)` brings up an empty broker of a new cluster on the same port (a lost volume, a broker
    replaced); on Apache Kafka `start()` restarts it on its data (Tansu keeps nothing, whatever is asked).
    """

    def __init__(self, home: Path) -> None:
        self.on_kafka = ON_APACHE_KAFKA
        self.home = home
        self.broker: EmbeddedBroker | ApacheKafkaBroker = (
            ApacheKafkaBroker(home, free_port(), heap="384m") if self.on_kafka else EmbeddedBroker(free_port())
        )

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def settings(self, base: Settings, **updates: object) -> Settings:
        """`base` pointed at this broker, idempotent producer as its kind allows (Tansu refuses it)."""
        idempotent = IDEMPOTENT_PRODUCER and self.on_kafka
        return base.model_copy(
            update={"kafka_bootstrap": self.bootstrap, "kafka_idempotent_producer": idempotent, **updates}
        )

    def start(self, *, fresh: bool = False) -> None:
        if fresh and isinstance(self.broker, ApacheKafkaBroker):
            shutil.rmtree(self.broker.home / "data", ignore_errors=True)  # formatted again: a new cluster id
        self.broker.start()

    def stop(self) -> None:
        self.broker.stop()


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path / "broker")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
