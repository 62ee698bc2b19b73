"""Integration fixtures shared across modules."""

from tests.integration.directory_fixtures import directory
from tests.integration.events_fixtures import events, gateway_port
from tests.integration.gateway_fixtures import gateway, gateway_settings
from tests.integration.matching_fixtures import matching

__all__ = ["directory", "events", "gateway", "gateway_port", "gateway_settings", "matching"]
