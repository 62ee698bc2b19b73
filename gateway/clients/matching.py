"""The matching service's operations as the gateway calls them: needs, matches, and partners' webhooks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.clients.upstream import Json, ServiceClient, creation_headers
from services.common.auth import Principal


class MatchingClient(ServiceClient):
    service = "matching"

    # --- needs and matches ----------------------------------------------------------------------------------

    async def get_need(self, need_id: str, principal: Principal) -> Json:
        answer: Json = await self.call("GET", f"/v1/needs/{need_id}", principal=principal)
        return answer

    async def needs_batch(self, ids: Sequence[str], principal: Principal | None) -> list[Json | None]:
        """Needs by id in that order (None: unknown, or not visible to the caller)."""
        answer = await self.call("POST", "/v1/needs/batch", principal=principal, json={"ids": list(ids)})
        items: list[Json | None] = answer["items"]
        return items

    async def matches_batch(self, ids: Sequence[str], principal: Principal | None) -> list[Json | None]:
        """Matches by id in that order (None: unknown, or not visible to the caller)."""
        answer = await self.call("POST", "/v1/matches/batch", principal=principal, json={"ids": list(ids)})
        items: list[Json | None] = answer["items"]
        return items

    async def needs_matches_batch(
        self, ids: Sequence[str], first: int, statuses: Sequence[str] | None, principal: Principal | None
    ) -> list[Json]:
        """Each need's best `first` matches (in `statuses`, if given), or the problem its single route would
        answer, in the order of `ids`."""
        body = {"ids": list(ids), "first": first, "statuses": list(statuses) if statuses is not None else None}
        answer = await self.call("POST", "/v1/needs/matches/batch", principal=principal, json=body)
        items: list[Json] = answer["items"]
        return items

    async def actors_matches_batch(
        self, ids: Sequence[str], first: int, statuses: Sequence[str] | None, principal: Principal | None
    ) -> list[Json]:
        """Each actor's best `first` matches (in `statuses`, if given), or the problem its single route would
        answer, in the order of `ids`."""
        body = {"ids": list(ids), "first": first, "statuses": list(statuses) if statuses is not None else None}
        answer = await self.call("POST", "/v1/actors/matches/batch", principal=principal, json=body)
        items: list[Json] = answer["items"]
        return items

    async def needs_match_counts_batch(
        self, ids: Sequence[str], answered_since: str | None, principal: Principal | None
    ) -> list[Json]:
        """Each need's matches counted by status (`counts`), or the problem its matches' route would answer."""
        body = {"ids": list(ids), "answered_since": answered_since}
        answer = await self.call("POST", "/v1/needs/match-counts/batch", principal=principal, json=body)
        items: list[Json] = answer["items"]
        return items

    async def search_needs(
        self,
        principal: Principal,
        *,
        first: int,
        after: str | None = None,
        owner_id: str | None = None,
        statuses: list[str] | None = None,
    ) -> Json:
        """A page of needs, newest first: `items`, their `cursors`, and `next` (None on the last page)."""
        params: dict[str, Any] = {"first": first}
        if after:
            params["after"] = after
        if owner_id:
            params["owner_id"] = owner_id
        if statuses:
            params["status"] = statuses
        page: Json = await self.call("GET", "/v1/needs", principal=principal, params=params)
        return page

    async def publish_need(self, body: Json, principal: Principal, *, idempotency_key: str | None = None) -> Json:
        answer: Json = await self.call(
            "POST", "/v1/needs", principal=principal, json=body, headers=creation_headers(idempotency_key)
        )
        return answer

    async def patch_need(self, need_id: str, changes: Json, principal: Principal, *, version: int | None) -> Json:
        """Change the given fields only (the service's PATCH); `version`, when given, is its If-Match."""
        headers = {"If-Match": f'"{version}"'} if version is not None else None
        answer: Json = await self.call(
            "PATCH", f"/v1/needs/{need_id}", principal=principal, json=changes, headers=headers
        )
        return answer

    async def close_need(self, need_id: str, status: str, comment: str | None, principal: Principal) -> Json:
        body = {"status": status, "comment": comment}
        answer: Json = await self.call("POST", f"/v1/needs/{need_id}/close", principal=principal, json=body)
        return answer

    async def respond_to_match(self, match_id: str, response: str, comment: str | None, principal: Principal) -> Json:
        body = {"response": response, "comment": comment}
        answer: Json = await self.call("POST", f"/v1/matches/{match_id}/respond", principal=principal, json=body)
        return answer

    async def mark_match_viewed(self, match_id: str, principal: Principal) -> Json:
        answer: Json = await self.call("POST", f"/v1/matches/{match_id}/view", principal=principal)
        return answer

    async def select_match(self, match_id: str, comment: str | None, principal: Principal) -> Json:
        body = {"comment": comment}
        answer: Json = await self.call("POST", f"/v1/matches/{match_id}/select", principal=principal, json=body)
        return answer

    # --- partners' webhooks ---------------------------------------------------------------------------------

    async def list_webhooks(self, principal: Principal) -> list[Json]:
        rows: list[Json] = await self.call("GET", "/v1/webhooks", principal=principal)
        return rows

    async def create_webhook(self, body: Json, principal: Principal) -> Json:
        answer: Json = await self.call("POST", "/v1/webhooks", principal=principal, json=body)
        return answer

    async def update_webhook(self, webhook_id: str, changes: Json, principal: Principal) -> Json:
        """Change the given fields only (the service's PATCH)."""
        answer: Json = await self.call("PATCH", f"/v1/webhooks/{webhook_id}", principal=principal, json=changes)
        return answer

    async def rotate_webhook_secret(self, webhook_id: str, principal: Principal) -> Json:
        answer: Json = await self.call("POST", f"/v1/webhooks/{webhook_id}/rotate-secret", principal=principal)
        return answer

    async def delete_webhook(self, webhook_id: str, principal: Principal) -> None:
        await self.call("DELETE", f"/v1/webhooks/{webhook_id}", principal=principal)

    async def webhook_deliveries(self, webhook_id: str, status: str | None, principal: Principal) -> list[Json]:
        """An endpoint's deliveries, newest first; all of them, or those in `status`."""
        params = {"status": status} if status else {}
        path = f"/v1/webhooks/{webhook_id}/deliveries"
        rows: list[Json] = await self.call("GET", path, principal=principal, params=params)
        return rows

    async def delivery_attempts(self, delivery_id: str, principal: Principal) -> list[Json]:
        rows: list[Json] = await self.call("GET", f"/v1/webhook-deliveries/{delivery_id}/attempts", principal=principal)
        return rows

    async def retry_delivery(self, delivery_id: str, principal: Principal) -> Json:
        answer: Json = await self.call("POST", f"/v1/webhook-deliveries/{delivery_id}/retry", principal=principal)
        return answer
