"""The gateway's clients of the services: one typed client per service over one pooled, identity-forwarding transport.

Resolvers, loaders and routes call `clients.directory`, `clients.events` and `clients.matching` methods; the services'
paths are written here only (tests/unit/test_gateway_clients.py checks that no other gateway module has one).
"""

from __future__ import annotations

import httpx

from gateway.clients.directory import DirectoryClient
from gateway.clients.events import FEEDS, EventsClient
from gateway.clients.matching import MatchingClient
from gateway.clients.upstream import UPSTREAM_CALLS, Json, ServiceClient, Upstream
from services.common.settings import Settings

__all__ = [
    "FEEDS",
    "UPSTREAM_CALLS",
    "DirectoryClient",
    "EventsClient",
    "Json",
    "MatchingClient",
    "ServiceClient",
    "ServiceClients",
    "Upstream",
]


class ServiceClients(Upstream):
    """The shared transport (`Upstream`) and, on it, each service's typed client."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(settings, transport=transport)
        self.directory = DirectoryClient(self)
        self.events = EventsClient(self)
        self.matching = MatchingClient(self)
