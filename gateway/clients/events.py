"""The events service's operations as the gateway calls them: events, registrations, and the public pages and feeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from gateway.clients.upstream import Json, ServiceClient, creation_headers
from services.common.auth import Principal

# The iCalendar feeds by the kind the gateway's public URL names (/ical/{kind}/{id}.ics).
FEEDS = {
    "events": "/v1/events/{id}.ics",
    "organizers": "/v1/feeds/organizers/{id}.ics",
    "territories": "/v1/feeds/territories/{id}.ics",
    "themes": "/v1/feeds/themes/{id}.ics",
}


class EventsClient(ServiceClient):
    service = "events"

    async def events_batch(self, ids: Sequence[str], principal: Principal | None) -> list[Json | None]:
        """Events by id in that order (None: unknown, or not visible to the caller)."""
        answer = await self.call("POST", "/v1/events/batch", principal=principal, json={"ids": list(ids)})
        items: list[Json | None] = answer["items"]
        return items

    async def actors_events_batch(self, ids: Sequence[str], first: int, principal: Principal | None) -> list[Any]:
        """The next `first` events of each actor, in the order of `ids` (an item per actor)."""
        body = {"ids": list(ids), "first": first}
        answer = await self.call("POST", "/v1/actors/events/batch", principal=principal, json=body)
        items: list[Any] = answer["items"]
        return items

    async def registrations_batch(self, event_ids: Sequence[str], principal: Principal | None) -> list[Json]:
        """Each event's registrations, or the problem its single route would answer, in the order of `event_ids`."""
        body = {"ids": list(event_ids)}
        answer = await self.call("POST", "/v1/events/registrations/batch", principal=principal, json=body)
        items: list[Json] = answer["items"]
        return items

    async def search_events(
        self,
        principal: Principal | None,
        *,
        first: int,
        after: str | None = None,
        starts_after: str | None = None,
        starts_before: str | None = None,
        themes: list[str] | None = None,
        territory: list[str] | None = None,
        text: str | None = None,
        organizer_id: str | None = None,
        near: tuple[float, float, float] | None = None,
        include_cancelled: bool = False,
        with_total: bool = False,
    ) -> Json:
        """A Relay-shaped page of events; times are ISO 8601, `near` is (lat, lon, radius_km)."""
        params: dict[str, Any] = {"first": first}
        if after:
            params["after"] = after
        if starts_after is not None:
            params["from"] = starts_after
        if starts_before is not None:
            params["to"] = starts_before
        for name, value in (("themes", themes), ("territory", territory), ("text", text)):
            if value:
                params[name] = value
        if organizer_id:
            params["organizer_id"] = organizer_id
        if near is not None:
            params.update(lat=near[0], lon=near[1], radius_km=near[2])
        if include_cancelled:
            params["include_cancelled"] = "true"
        if with_total:
            params["with_total"] = "true"
        page: Json = await self.call("GET", "/v1/events", principal=principal, params=params)
        return page

    async def publish_event(self, body: Json, principal: Principal, *, idempotency_key: str | None = None) -> Json:
        headers = creation_headers(idempotency_key)
        answer: Json = await self.call("POST", "/v1/events", principal=principal, json=body, headers=headers)
        return answer

    async def cancel_event(self, event_id: str, reason: str | None, principal: Principal) -> Json:
        answer: Json = await self.call(
            "POST", f"/v1/events/{event_id}/cancel", principal=principal, json={"reason": reason}
        )
        return answer

    async def register_participant(
        self, event_id: str, body: Json, principal: Principal, *, idempotency_key: str | None = None
    ) -> Json:
        headers = creation_headers(idempotency_key)
        answer: Json = await self.call(
            "POST", f"/v1/events/{event_id}/registrations", principal=principal, json=body, headers=headers
        )
        return answer

    async def cancel_registration(self, registration_id: str, principal: Principal) -> Json:
        answer: Json = await self.call("POST", f"/v1/registrations/{registration_id}/cancel", principal=principal)
        return answer

    async def erase_person(self, email: str, principal: Principal) -> Json:
        """Anonymise the registrations made with an address (admins): {registrations_anonymised}."""
        answer: Json = await self.call("POST", "/v1/erasures", principal=principal, json={"email": email})
        return answer

    # --- what the gateway relays as it is, anonymously: pages people reach from links, and feeds -----------------

    async def feed(self, kind: str, ident: str, headers: dict[str, str]) -> httpx.Response:
        """An iCalendar feed of `FEEDS` (`ident` already quoted for a path)."""
        return await self.request("GET", FEEDS[kind].format(id=ident), headers=headers)

    async def cancel_page(self, registration_id: str, token: str, headers: dict[str, str]) -> httpx.Response:
        """The page an e-mail's cancel link opens."""
        path = f"/v1/registrations/{registration_id}/cancel"
        return await self.request("GET", path, headers=headers, params={"token": token})

    async def cancel_by_link(self, registration_id: str, token: str, headers: dict[str, str]) -> httpx.Response:
        """The cancel page's button: the link's token stands for the registrant."""
        path = f"/v1/registrations/{registration_id}/cancel"
        return await self.request("POST", path, headers=headers, params={"token": token})

    async def event_page(self, event_id: str, headers: dict[str, str]) -> httpx.Response:
        """A published event, as its Accept header asks (JSON or JSON-LD)."""
        return await self.request("GET", f"/v1/events/{event_id}", headers=headers)

    async def event_jsonld(self, event_id: str, headers: dict[str, str]) -> httpx.Response:
        return await self.request("GET", f"/v1/events/{event_id}/jsonld", headers=headers)
