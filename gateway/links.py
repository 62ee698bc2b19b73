"""The pages people reach from e-mails, calendars and JSON-LD, served on the gateway from the events service.

Only these: a registration's cancel link (the page it opens and the button's action) and an event's page with its
JSON-LD; the events REST API as a whole stays inside. They keep the events service's paths, so a link e-mailed when
links pointed at the events service's own host works once that host is routed to the gateway. Nothing here forwards
a caller's identity: the cancel link carries its own token, and the event pages are the anonymous public view.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import httpx
from fastapi import FastAPI, Query, Request, Response

from gateway.clients import ServiceClients
from services.common.errors import Unavailable, parse_id, problem_response

# What passes through, and nothing else: content negotiation (JSON-LD) and caching.
REQUEST_HEADERS = ("accept", "if-none-match")
RESPONSE_HEADERS = ("content-type", "etag", "cache-control")
CancelToken = Annotated[str, Query(max_length=64, description="The token of the e-mail's link")]


def install_public_pages(app: FastAPI, clients: Callable[[], ServiceClients]) -> None:
    """Add the routes people follow from links to the gateway's app; `clients` gives the started gateway's client."""

    async def relay(request: Request, call: Callable[[dict[str, str]], Awaitable[httpx.Response]]) -> Response:
        headers = {k: v for k, v in request.headers.items() if k in REQUEST_HEADERS}
        try:
            upstream = await call(headers)
        except httpx.HTTPError:  # the events service is down: say so plainly
            unavailable = Unavailable("the events service is unavailable")
            return problem_response(unavailable, request.url.path, {"Retry-After": "5"})
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in RESPONSE_HEADERS}
        return Response(upstream.content, upstream.status_code, headers=passed)

    # Ids are parsed here and rebuilt, never pasted: a path like `…/{id}.ics` or `…/batch` reaches no other route.
    # The routes' own paths are the events service's (see above): the gateway's public URLs, not calls.

    @app.get("/v1/registrations/{registration_id}/cancel", summary="The page an e-mail's cancel link opens")
    async def _cancel_page(registration_id: str, token: CancelToken, request: Request) -> Response:
        rid = parse_id(registration_id, "registration")
        return await relay(request, lambda headers: clients().events.cancel_page(str(rid), token, headers))

    @app.post("/v1/registrations/{registration_id}/cancel", summary="The cancel page's button (the link's token)")
    async def _cancel(registration_id: str, token: CancelToken, request: Request) -> Response:
        rid = parse_id(registration_id, "registration")
        return await relay(request, lambda headers: clients().events.cancel_by_link(str(rid), token, headers))

    @app.get("/v1/events/{event_id}", summary="A published event (Accept: application/ld+json for JSON-LD)")
    async def _event(event_id: str, request: Request) -> Response:
        eid = parse_id(event_id, "event")
        return await relay(request, lambda headers: clients().events.event_page(str(eid), headers))

    @app.get("/v1/events/{event_id}/jsonld", summary="A published event as schema.org Event JSON-LD")
    async def _event_jsonld(event_id: str, request: Request) -> Response:
        eid = parse_id(event_id, "event")
        return await relay(request, lambda headers: clients().events.event_jsonld(str(eid), headers))
