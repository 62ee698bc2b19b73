"""The events service's REST API: its router (the events routes here, registrations, exports and pages beside).

Routes parse and answer HTTP; what a caller can do is a use case of `service.py`, which decides with `rules.py`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from services.common import filters, versions
from services.common.app import AppSettings, DbPool
from services.common.auth import CurrentPrincipal, OptionalPrincipal
from services.common.errors import ValidationFailed
from services.common.idempotency import Idempotent
from services.common.rules import Instant
from services.contracts.vocabularies import THEMES_BY_CODE
from services.events import feeds, registrations, rules, service, store
from services.events.feeds import event_url as event_url  # where callers have found it
from services.events.model import EventCancel, EventCreate, EventRead, EventUpdate

MAX_PAGE = 100
events = APIRouter()


def etag(response: Response, version: int) -> None:
    response.headers["ETag"] = versions.etag(version)


@events.post("/events", status_code=201, response_model=EventRead, summary="Create an event (a draft unless publish)")
async def create_event(
    body: EventCreate, principal: CurrentPrincipal, pool: DbPool, response: Response, once: Idempotent
) -> EventRead | Response:
    event = await service.create_event(pool, body, principal=principal, once=once)
    if isinstance(event, Response):  # the first answer to this idempotency key
        return event
    etag(response, event.version)
    response.headers["Location"] = service.event_location(event.id)
    return event


@events.get("/events", summary="Search events in chronological order")
async def search_events(
    pool: DbPool,
    starts_after: Annotated[
        Instant | None, Query(alias="from", description="Events not over at this time (default: now)")
    ] = None,
    starts_before: Annotated[Instant | None, Query(alias="to", description="Events starting before this time")] = None,
    themes: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI query list
    territory: Annotated[list[str], Query(description="INSEE codes: COM-25056, EPCI-…, DEP-25, REG-27")] = [],  # noqa: B006
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float | None, Query(gt=0, le=1000)] = None,
    organizer_id: str | None = None,
    text: Annotated[str | None, Query(max_length=200)] = None,
    include_cancelled: bool = False,
    first: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: str | None = None,
    with_total: bool = False,
) -> dict[str, Any]:
    for when in (starts_after, starts_before):
        if when is not None and when.tzinfo is None:
            raise ValidationFailed("from/to need a time zone, e.g. 2027-03-01T00:00:00+01:00", field="from", rule="tz")
    if starts_after and starts_before and starts_before <= starts_after:
        raise ValidationFailed("to must be after from", field="to", rule="after_from")
    filters.check_vocabulary("themes", themes, THEMES_BY_CODE)
    codes = filters.territory_codes(territory)
    organizer = None
    if organizer_id is not None:
        try:
            organizer = uuid.UUID(organizer_id)
        except ValueError as exc:
            raise ValidationFailed("organizer_id: not an actor id", field="organizer_id", rule="format") from exc
    query = store.EventSearch(
        starts_after=starts_after or store.now(),
        starts_before=starts_before,
        themes=themes,
        near=filters.near(lat, lon, radius_km),
        territories=codes,
        organizer=organizer,
        text=(text or "").strip() or None,
        statuses=rules.searched_statuses(include_cancelled),
    )
    return await service.search_events(pool, query, first=first, after=after, with_total=with_total)


@events.post("/events/batch", summary="Events by ids, in the order asked (null when unknown or not visible)")
async def events_batch(body: filters.BatchRequest, pool: DbPool, principal: OptionalPrincipal) -> dict[str, Any]:
    return {"items": await service.events_by_ids(pool, body.uuids(), principal)}


@events.get("/actors/{actor_id}/events", summary="Events an actor organizes, next first (drafts for itself)")
async def organizer_events(
    actor_id: str,
    pool: DbPool,
    principal: OptionalPrincipal,
    include_past: bool = False,
    first: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    return await service.organizer_events(
        pool, actor_id, principal, include_past=include_past, first=first, after=after
    )


class OrganizersEvents(filters.BatchRequest):
    """Organizers whose next events are wanted, and how many each."""

    first: int = Field(3, ge=1, le=MAX_PAGE)


@events.post("/actors/events/batch", summary="The next events of several organizers, in one call")
async def organizers_events(body: OrganizersEvents, pool: DbPool, principal: OptionalPrincipal) -> dict[str, Any]:
    return {"items": await service.next_events_of(pool, body.uuids(), principal, first=body.first)}


# `/events/{event_id}.ics` is tried before `/events/{event_id}`, which would take it for an id.
events.include_router(feeds.one_event)


@events.get(
    "/events/{event_id}",
    response_model=EventRead,
    summary="One event (Accept: application/ld+json for schema.org JSON-LD)",
)
async def get_event(
    event_id: str,
    request: Request,
    pool: DbPool,
    principal: OptionalPrincipal,
    settings: AppSettings,
    response: Response,
) -> Any:
    event = await service.get_event(pool, event_id, principal)
    if "application/ld+json" in request.headers.get("accept", ""):
        return JSONResponse(feeds.event_json_ld(event, settings), media_type="application/ld+json")
    etag(response, event.version)
    return event


@events.put("/events/{event_id}", response_model=EventRead, summary="Replace an event's fields (If-Match: version)")
async def update_event(
    event_id: str,
    body: EventUpdate,
    principal: CurrentPrincipal,
    pool: DbPool,
    settings: AppSettings,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> EventRead:
    expected = versions.parse_if_match(if_match, "event", "/v1/events/{id}")
    event = await service.update_event(
        pool, event_id, body, principal=principal, expected_version=expected, settings=settings
    )
    etag(response, event.version)
    return event


@events.post("/events/{event_id}/publish", response_model=EventRead, summary="Publish a draft")
async def publish_event(event_id: str, principal: CurrentPrincipal, pool: DbPool, response: Response) -> EventRead:
    event = await service.publish_event(pool, event_id, principal=principal)
    etag(response, event.version)
    return event


@events.post("/events/{event_id}/cancel", response_model=EventRead, summary="Cancel an event and its registrations")
async def cancel_event(
    event_id: str, body: EventCancel, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> EventRead:
    return await service.cancel_event(pool, event_id, body.reason, principal=principal, settings=settings)


router = APIRouter(prefix="/v1", tags=["events"])
router.include_router(events)
router.include_router(registrations.router)
router.include_router(feeds.router)
