"""Per-request DataLoaders: each cross-service edge is fetched in one batched call per service, not once per item."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
from graphql import GraphQLError
from strawberry.dataloader import DataLoader

from gateway.clients import Json, ServiceClients
from gateway.errors import from_response
from services.common.auth import Principal

BATCH = 500  # the services' batch endpoints take up to 500 ids

# A typed client's batch taking arguments after the ids (ids, *arguments, principal): one item per id, in order.
ArgumentBatch = Callable[..., Awaitable[list[Any]]]
# A list field's key: the id, then the field's arguments (`first`, `statuses`…), all hashable.
ListKey = tuple[Any, ...]
Statuses = tuple[str, ...] | None


class Loaders:
    """The loaders of one request (or one subscription event): they cache what they fetched, for this caller only."""

    def __init__(self, clients: ServiceClients, principal: Principal | None) -> None:
        self.clients = clients
        self.principal = principal
        self.actor: DataLoader[str, Json | None] = DataLoader(self._actors, max_batch_size=BATCH)
        self.event: DataLoader[str, Json | None] = DataLoader(self._events, max_batch_size=BATCH)
        self.need: DataLoader[str, Json | None] = DataLoader(self._needs, max_batch_size=BATCH)
        self.match: DataLoader[str, Json | None] = DataLoader(self._matches, max_batch_size=BATCH)
        # Lists of each key: keyed by (id, first), so that one `first` is one call for the whole level.
        self.actor_events: DataLoader[tuple[str, int], list[Json]] = DataLoader(
            self._actor_events, max_batch_size=BATCH
        )
        # (id, first, statuses): one call per distinct (first, statuses) for the whole level.
        self.need_matches: DataLoader[tuple[str, int, Statuses], list[Json]] = DataLoader(
            self._need_matches, max_batch_size=BATCH
        )
        self.actor_matches: DataLoader[tuple[str, int, Statuses], list[Json]] = DataLoader(
            self._actor_matches, max_batch_size=BATCH
        )
        # (need id, answered since as ISO 8601 or None).
        self.need_match_counts: DataLoader[tuple[str, str | None], Json] = DataLoader(
            self._need_match_counts, max_batch_size=BATCH
        )
        self.event_registrations: DataLoader[str, list[Json]] = DataLoader(
            self._event_registrations, max_batch_size=BATCH
        )

    async def _actors(self, ids: Sequence[str]) -> list[Json | None]:
        return await self.clients.directory.actors_batch(ids, self.principal)

    async def _events(self, ids: Sequence[str]) -> list[Json | None]:
        return await self.clients.events.events_batch(ids, self.principal)

    async def _needs(self, ids: Sequence[str]) -> list[Json | None]:
        return await self.clients.matching.needs_batch(ids, self.principal)

    async def _matches(self, ids: Sequence[str]) -> list[Json | None]:
        return await self.clients.matching.matches_batch(ids, self.principal)

    async def _pages(self, batch: ArgumentBatch, keys: Sequence[ListKey]) -> dict[ListKey, Any]:
        """The items of a batch operation taking arguments (`first`…), by key: one call per distinct set of
        arguments (usually one)."""
        by_arguments: dict[ListKey, list[str]] = defaultdict(list)
        for key in keys:
            by_arguments[tuple(key[1:])].append(key[0])

        async def page(arguments: ListKey, ids: list[str]) -> list[tuple[ListKey, Any]]:
            items = await batch(ids, *arguments, self.principal)
            return [((key, *arguments), item) for key, item in zip(ids, items, strict=True)]

        pages = await asyncio.gather(*(page(arguments, ids) for arguments, ids in by_arguments.items()))
        return dict(pair for found in pages for pair in found)

    @staticmethod
    def _refusal(service: str, item: Json) -> GraphQLError | None:
        """The refusal a batch answered for one key, as its single route would have (that key's field fails
        alone): the one mapping of a service's problem body to a GraphQL error."""
        if item.get("problem") is None:
            return None
        problem = item["problem"]
        return from_response(service, httpx.Response(int(problem.get("status", 400)), json=problem))

    @classmethod
    def _listed(cls, service: str, item: Json, name: str) -> list[Json] | GraphQLError:
        """One key's list, or the refusal its single route would have answered."""
        refused = cls._refusal(service, item)
        if refused is not None:
            return refused
        listed: list[Json] = item[name]
        return listed

    async def _actor_events(self, keys: Sequence[tuple[str, int]]) -> list[list[Json]]:
        found = await self._pages(self.clients.events.actors_events_batch, keys)
        return [found[key] or [] for key in keys]

    async def _need_matches(self, keys: Sequence[tuple[str, int, Statuses]]) -> list[list[Json] | GraphQLError]:
        matching = self.clients.matching
        found = await self._pages(matching.needs_matches_batch, keys)
        return [self._listed(matching.service, found[key], "matches") for key in keys]

    async def _actor_matches(self, keys: Sequence[tuple[str, int, Statuses]]) -> list[list[Json] | GraphQLError]:
        matching = self.clients.matching
        found = await self._pages(matching.actors_matches_batch, keys)
        return [self._listed(matching.service, found[key], "matches") for key in keys]

    async def _need_match_counts(self, keys: Sequence[tuple[str, str | None]]) -> list[Json | GraphQLError]:
        matching = self.clients.matching
        found = await self._pages(matching.needs_match_counts_batch, keys)
        return [self._refusal(matching.service, found[key]) or found[key]["counts"] for key in keys]

    async def _event_registrations(self, event_ids: Sequence[str]) -> list[list[Json] | GraphQLError]:
        events = self.clients.events
        items = await events.registrations_batch(event_ids, self.principal)
        return [self._listed(events.service, item, "registrations") for item in items]
