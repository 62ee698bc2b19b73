"""Integration fixtures shared across modules."""

from collections.abc import AsyncIterator

import pytest

from services.common.embedded import EmbeddedBroker, free_port
from tests.integration.directory_fixtures import directory
from tests.integration.events_fixtures import events, gateway_port
from tests.integration.gateway_fixtures import gateway, gateway_settings
from tests.integration.matching_fixtures import matching, own_matching

__all__ = ["directory", "events", "gateway", "gateway_port", "gateway_settings", "matching", "own_matching"]


@pytest.fixture
async def own_broker() -> AsyncIterator[EmbeddedBroker]:
    """A broker of the test's own, which it may stop, and whose consumer groups no other test shares."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
