"""The events service's exports: one event as iCalendar or schema.org JSON-LD, calendar feeds, registrations as CSV."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from services.common.app import AppSettings, DbPool
from services.common.auth import CurrentPrincipal, OptionalPrincipal
from services.common.encoding import csv_cell
from services.common.errors import NotFound
from services.common.settings import Settings
from services.contracts import territories
from services.contracts.vocabularies import THEMES_BY_CODE
from services.events import ical, service, store
from services.events.model import EventRead, json_ld

FEED_LIMIT = 500
FEED_HISTORY = timedelta(days=31)
ICS = "text/calendar; charset=utf-8"

# Three routers because each is included where its paths must be tried (see `api.py`): `one_event` before
# `GET /events/{event_id}`, which would take `/events/x.ics` for an id.
one_event = APIRouter()
registrations_export = APIRouter()
router = APIRouter()


def event_url(settings: Settings, event_id: str) -> str:
    """The event's public page, on the gateway (which serves this path: gateway/links.py)."""
    return settings.public_link(f"/v1/events/{event_id}")


def event_json_ld(event: EventRead, settings: Settings) -> dict[str, Any]:
    organizers = [
        {"@type": "Organization", "@id": f"urn:uuid:{o.id}", "name": o.name or o.id} for o in event.organizers
    ]
    return json_ld(event, event_url(settings, event.id), organizers)


# --- one event ------------------------------------------------------------------------------------------


@one_event.get("/events/{event_id}.ics", summary="One event as iCalendar", response_class=Response)
async def event_ics(event_id: str, pool: DbPool, principal: OptionalPrincipal, settings: AppSettings) -> Response:
    event = await service.get_event(pool, event_id, principal)
    body = ical.calendar([event], event.title, {event.id: event_url(settings, event.id)})
    return Response(body, media_type=ICS, headers={"Content-Disposition": f'inline; filename="{event.id}.ics"'})


@one_event.get("/events/{event_id}/jsonld", summary="One event as schema.org Event JSON-LD")
async def event_jsonld(event_id: str, pool: DbPool, principal: OptionalPrincipal, settings: AppSettings) -> Response:
    event = await service.get_event(pool, event_id, principal)
    return JSONResponse(event_json_ld(event, settings), media_type="application/ld+json")


# --- registrations as CSV -------------------------------------------------------------------------------

CSV_COLUMNS = ["id", "status", "position", "participant_kind", "actor_id", "actor_name", "name", "email", "created_at"]


@registrations_export.get(
    "/events/{event_id}/registrations.csv",
    summary="An event's registrations as CSV (organizers and admins)",
    response_class=Response,
)
async def registrations_csv(event_id: str, principal: CurrentPrincipal, pool: DbPool) -> Response:
    eid, registrations = await service.event_registrations(pool, event_id, principal)
    actors = await service.replica_actors(pool, [uuid.UUID(r.actor_id) for r in registrations if r.actor_id])
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(CSV_COLUMNS)
    for reg in registrations:
        actor = actors.get(uuid.UUID(reg.actor_id)) if reg.actor_id else None
        writer.writerow(
            [
                csv_cell(v)
                for v in (
                    reg.id,
                    reg.status.value,
                    reg.position,
                    reg.participant_kind,
                    reg.actor_id,
                    actor.name if actor else None,
                    reg.person_name,
                    reg.person_email,
                    reg.created_at.isoformat(),
                )
            ]
        )
    return Response(
        "\ufeff" + out.getvalue(),  # BOM: spreadsheets then read UTF-8
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="inscriptions-{eid}.csv"'},
    )


# --- iCalendar feeds -----------------------------------------------------------------------------------


async def _feed(pool: DbPool, settings: Settings, query: store.EventSearch, name: str) -> Response:
    query.starts_after = store.now() - FEED_HISTORY
    events = await service.feed_events(pool, query, limit=FEED_LIMIT)
    body = ical.calendar(events, name, {e.id: event_url(settings, e.id) for e in events})
    return Response(body, media_type=ICS, headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/feeds/organizers/{actor_id}.ics", summary="iCalendar feed of an organizer's events", response_class=Response
)
async def organizer_feed(actor_id: str, pool: DbPool, settings: AppSettings) -> Response:
    actor = await service.replica_actor(pool, actor_id)
    return await _feed(pool, settings, store.EventSearch(organizer=actor.id), f"Maillage — {actor.name}")


@router.get(
    "/feeds/territories/{code}.ics",
    summary="iCalendar feed of a territory's events (COM-, EPCI-, DEP-, REG-)",
    response_class=Response,
)
async def territory_feed(code: str, pool: DbPool, settings: AppSettings) -> Response:
    try:
        territory = territories.normalize_territory(code)
    except territories.TerritoryError as exc:
        raise NotFound(f"no territory {code}: {exc}") from exc
    return await _feed(pool, settings, store.EventSearch(territories=[territory]), f"Maillage — {territory}")


@router.get("/feeds/themes/{theme}.ics", summary="iCalendar feed of a theme's events", response_class=Response)
async def theme_feed(theme: str, pool: DbPool, settings: AppSettings) -> Response:
    if theme not in THEMES_BY_CODE:
        raise NotFound(f"no theme {theme}")
    return await _feed(pool, settings, store.EventSearch(themes=[theme]), f"Maillage — {THEMES_BY_CODE[theme].label}")
