"""The directory service's operations as the gateway calls them: actors read, searched, registered, changed; and,
with the gateway's own identity, the persons it signs in (looked up at send time: no address is kept here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.clients.upstream import Json, ServiceClient, creation_headers
from services.common.auth import Principal, service_headers
from services.common.versions import etag


class DirectoryClient(ServiceClient):
    service = "directory"

    async def actors_batch(self, ids: Sequence[str], principal: Principal | None) -> list[Json | None]:
        """Actors by id in that order (None: unknown, or not visible to the caller)."""
        answer = await self.call("POST", "/v1/actors/batch", principal=principal, json={"ids": list(ids)})
        items: list[Json | None] = answer["items"]
        return items

    async def search_actors(
        self,
        principal: Principal | None,
        *,
        first: int,
        after: str | None = None,
        text: str | None = None,
        kinds: list[str] | None = None,
        themes: list[str] | None = None,
        service_types: list[str] | None = None,
        territory: list[str] | None = None,
        near: tuple[float, float, float] | None = None,
        in_qpv: bool | None = None,
        with_total: bool = False,
    ) -> Json:
        """A Relay-shaped page of actors; `near` is (lat, lon, radius_km); empty criteria are not sent."""
        params: dict[str, Any] = {"first": first}
        if after:
            params["after"] = after
        if text:
            params["text"] = text
        for name, value in (("kinds", kinds), ("themes", themes), ("service_types", service_types)):
            if value:
                params[name] = value
        if territory:
            params["territory"] = territory
        if near is not None:
            params.update(lat=near[0], lon=near[1], radius_km=near[2])
        if in_qpv is not None:
            params["in_qpv"] = str(in_qpv).lower()
        if with_total:
            params["with_total"] = "true"
        page: Json = await self.call("GET", "/v1/actors", principal=principal, params=params)
        return page

    async def register_actor(self, body: Json, principal: Principal, *, idempotency_key: str | None = None) -> Json:
        answer: Json = await self.call(
            "POST", "/v1/actors", principal=principal, json=body, headers=creation_headers(idempotency_key)
        )
        return answer

    async def patch_actor(
        self, actor_id: str, changes: Json, principal: Principal, *, version: int | None = None
    ) -> Json:
        """The service changes the given fields only; `version`, when given, must be the actor's current one (sent
        as If-Match: a stale one is a CONFLICT naming the If-Match field, rule `stale`)."""
        headers = {"If-Match": etag(version)} if version is not None else {}
        answer: Json = await self.call(
            "PATCH", f"/v1/actors/{actor_id}", principal=principal, json=changes, headers=headers
        )
        return answer

    async def archive_actor(self, actor_id: str, principal: Principal) -> Json:
        answer: Json = await self.call("POST", f"/v1/actors/{actor_id}/archive", principal=principal)
        return answer

    # --- persons: the gateway's own calls (its service identity), for signing people in ---------------

    def _as_gateway(self) -> dict[str, str]:
        return service_headers(self.upstream.settings, "gateway")

    async def lookup_person(self, email: str) -> Json:
        """{person: {id, email, name} | None, memberships: [{actor: {id, name, kind}, role}]} of an address."""
        answer: Json = await self.call(
            "POST", "/v1/persons/lookup", principal=None, json={"email": email}, headers=self._as_gateway()
        )
        return answer

    async def get_person(self, person_id: str) -> Json:
        answer: Json = await self.call("GET", f"/v1/persons/{person_id}", principal=None, headers=self._as_gateway())
        return answer

    async def claim_actors(self, email: str) -> list[Json]:
        """Pending claims of the actors staff registered or imported whose contact is this address."""
        answer: list[Json] = await self.call(
            "POST", "/v1/claims", principal=None, json={"email": email}, headers=self._as_gateway()
        )
        return answer

    async def confirm_claim(self, claim_id: str) -> Json:
        answer: Json = await self.call(
            "POST", f"/v1/claims/{claim_id}/confirm", principal=None, headers=self._as_gateway()
        )
        return answer

    async def invite_member(self, actor_id: str, body: Json, principal: Principal) -> Json:
        answer: Json = await self.call("POST", f"/v1/actors/{actor_id}/members", principal=principal, json=body)
        return answer

    async def list_members(self, actor_id: str, principal: Principal) -> list[Json]:
        answer: list[Json] = await self.call("GET", f"/v1/actors/{actor_id}/members", principal=principal)
        return answer

    async def remove_member(self, actor_id: str, person_id: str, principal: Principal) -> None:
        await self.call("DELETE", f"/v1/actors/{actor_id}/members/{person_id}", principal=principal)

    async def erase_person(self, email: str, principal: Principal) -> Json:
        """Delete the person of an address, its memberships and its claims (admins): {persons_deleted,
        memberships_deleted, claims_deleted}, zeros when there was none."""
        answer: Json = await self.call("POST", "/v1/erasures", principal=principal, json={"email": email})
        return answer
