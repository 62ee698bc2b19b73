"""Per-request DataLoaders: each cross-service edge is fetched in one batched call per service, not once per item."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from strawberry.dataloader import DataLoader

from gateway.clients import ServiceClients
from services.common.auth import Principal

BATCH = 500  # the services' batch endpoints take up to 500 ids

Json = dict[str, Any]


class Loaders:
    """The loaders of one request (or one subscription event): they cache what they fetched, for this caller only."""

    def __init__(self, clients: ServiceClients, principal: Principal | None) -> None:
        self.clients = clients
        self.principal = principal
        self.actor: DataLoader[str, Json | None] = DataLoader(self._actors, max_batch_size=BATCH)
        self.event: DataLoader[str, Json | None] = DataLoader(self._events, max_batch_size=BATCH)
        self.need: DataLoader[str, Json | None] = DataLoader(self._needs, max_batch_size=BATCH)
        self.match: DataLoader[str, Json | None] = DataLoader(self._matches, max_batch_size=BATCH)
        self.actor_events: DataLoader[tuple[str, int], list[Json]] = DataLoader(
            self._actor_events, max_batch_size=BATCH
        )
        self.need_matches: DataLoader[str, list[Json]] = DataLoader(self._need_matches)
        self.actor_matches: DataLoader[str, list[Json]] = DataLoader(self._actor_matches)

    async def _batch(self, service: str, path: str, ids: Sequence[str]) -> list[Json | None]:
        answer = await self.clients.call(service, "POST", path, principal=self.principal, json={"ids": list(ids)})
        items: list[Json | None] = answer["items"]
        return items

    async def _actors(self, ids: Sequence[str]) -> list[Json | None]:
        return await self._batch("directory", "/v1/actors/batch", ids)

    async def _events(self, ids: Sequence[str]) -> list[Json | None]:
        return await self._batch("events", "/v1/events/batch", ids)

    async def _needs(self, ids: Sequence[str]) -> list[Json | None]:
        return await self._batch("matching", "/v1/needs/batch", ids)

    async def _matches(self, ids: Sequence[str]) -> list[Json | None]:
        return await self._batch("matching", "/v1/matches/batch", ids)

    async def _actor_events(self, keys: Sequence[tuple[str, int]]) -> list[list[Json]]:
        by_first: dict[int, list[str]] = defaultdict(list)
        for actor_id, first in keys:
            by_first[first].append(actor_id)
        found: dict[tuple[str, int], list[Json]] = {}
        for first, actor_ids in by_first.items():
            answer = await self.clients.call(
                "events",
                "POST",
                "/v1/actors/events/batch",
                principal=self.principal,
                json={"ids": actor_ids, "first": first},
            )
            for actor_id, events in zip(actor_ids, answer["items"], strict=True):
                found[(actor_id, first)] = events or []
        return [found[key] for key in keys]

    async def _each(self, paths: list[str]) -> list[list[Json] | BaseException]:
        # No batch endpoint: one call per key, concurrently; a refusal fails its own key only.
        calls = (self.clients.call("matching", "GET", path, principal=self.principal) for path in paths)
        return list(await asyncio.gather(*calls, return_exceptions=True))

    async def _need_matches(self, need_ids: Sequence[str]) -> list[list[Json] | BaseException]:
        return await self._each([f"/v1/needs/{nid}/matches" for nid in need_ids])

    async def _actor_matches(self, actor_ids: Sequence[str]) -> list[list[Json] | BaseException]:
        return await self._each([f"/v1/actors/{aid}/matches" for aid in actor_ids])
