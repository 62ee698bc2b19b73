"""The directory's REST API: register, edit, archive, search and snapshot ESS actors and local authorities."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Request, Response

from services.common import errors, filters, versions
from services.common.app import AppSettings, DbPool
from services.common.auth import (
    CurrentPrincipal,
    OptionalPrincipal,
    Principal,
    Role,
    ServiceIdentity,
    principal_or_service,
)
from services.common.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from services.common.idempotency import Idempotent
from services.common.outbox import enqueue
from services.common.rules import Instant, storable_instant
from services.contracts.events import ActorArchived, ActorRegistered, ActorUpdated, EventPayload
from services.contracts.vocabularies import ACTOR_KINDS, SERVICE_TYPES, THEMES, Term
from services.directory import imports, store
from services.directory.model import ActorCreate, ActorRead, ActorUpdate, to_contract

SERVICE = "directory"
WRITE_SCOPE = "directory:write"
MAX_PAGE = 100

router = APIRouter(prefix="/v1", tags=["directory"])

# Services call for themselves on two routes only: the matching notifier reads the contact of the actor it
# writes to (addresses never travel in events), and the events and matching replicas refill from the snapshot.
ContactReader = Annotated[Principal | ServiceIdentity | None, Depends(principal_or_service("matching"))]
SnapshotReader = Annotated[Principal | ServiceIdentity | None, Depends(principal_or_service("events", "matching"))]


# --- who may do what --------------------------------------------------------------------


def can_see_contact(principal: Principal | ServiceIdentity | None, actor_id: str) -> bool:
    if principal is None:
        return False
    if isinstance(principal, ServiceIdentity):
        return True  # only a service the route names gets here
    return principal.role in (Role.ADMIN, Role.PARTNER) or principal.acts_for(actor_id)


def require_creator(principal: Principal) -> None:
    if principal.is_admin or (principal.role == Role.PARTNER and principal.has_scope(WRITE_SCOPE)):
        return
    raise Forbidden(f"registering actors needs an admin, or a partner with the {WRITE_SCOPE} scope")


def require_editor(principal: Principal, actor_id: str) -> None:
    if principal.acts_for(actor_id):
        return
    if principal.role == Role.PARTNER and principal.has_scope(WRITE_SCOPE):
        return
    raise Forbidden("only an admin, a partner with the directory:write scope or the actor itself edits an actor")


# --- helpers ---------------------------------------------------------------------------------


def parse_id(actor_id: str) -> uuid.UUID:
    return errors.parse_id(actor_id, "actor")


def parse_if_match(if_match: str | None) -> int:
    return versions.parse_if_match(if_match, "actor", "/v1/actors/{id}")


def etag(actor: ActorRead) -> str:
    return versions.etag(actor.version)


async def emit(conn: asyncpg.Connection, event: EventPayload, actor: ActorRead) -> None:
    await enqueue(conn, service=SERVICE, key=actor.id, payload=event, subject=actor.id)


async def ensure_identifiers_free(
    conn: asyncpg.Connection, fields: ActorCreate, exclude: uuid.UUID | None = None
) -> None:
    holder = await store.find_holder(conn, fields, exclude)
    if holder is not None:
        column, value, actor_id = holder
        raise Conflict(
            f"{column} {value} already belongs to actor {actor_id}",
            field=column,
            rule="unique",
            existing_actor_id=actor_id,
        )


def _unique_violation(exc: asyncpg.UniqueViolationError) -> Conflict:
    constraint = exc.constraint_name or ""
    column = constraint.removeprefix("actors_").removesuffix("_key")
    return Conflict(f"{column} already belongs to another actor", field=column, rule="unique")


# --- actors ------------------------------------------------------------------------------------


@router.post("/actors", status_code=201, response_model=ActorRead, summary="Register an actor")
async def register_actor(
    body: ActorCreate, principal: CurrentPrincipal, pool: DbPool, response: Response, once: Idempotent
) -> ActorRead | Response:
    require_creator(principal)
    async with pool.acquire() as conn, conn.transaction():
        if (first := await once.claim(conn, body)) is not None:
            return first
        await ensure_identifiers_free(conn, body)
        try:
            row = await store.insert_actor(conn, body)
        except asyncpg.UniqueViolationError as exc:
            raise _unique_violation(exc) from exc
        actor = store.to_read(row)
        await emit(conn, ActorRegistered(actor=to_contract(actor)), actor)
        headers = {"ETag": etag(actor), "Location": f"/v1/actors/{actor.id}"}
        await once.remember(conn, 201, actor, headers)
    response.headers.update(headers)
    return actor


@router.get("/actors/snapshot", summary="Every actor, paged by watermark (for replicas)")
async def actors_snapshot(
    pool: DbPool,
    caller: SnapshotReader,
    updated_since: Instant | None = None,
    after: Annotated[str | None, Query(description="next from the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    if caller is None:
        raise Unauthenticated("missing credentials: the snapshot is for services, admins and partners")
    if isinstance(caller, Principal) and caller.role not in (Role.ADMIN, Role.PARTNER):
        raise Forbidden("the snapshot is for services, admins and partners")
    position = None
    if after:
        try:
            stamp, _, last_id = after.partition("|")
            position = (storable_instant(datetime.fromisoformat(stamp)), uuid.UUID(last_id))
        except ValueError as exc:
            raise ValidationFailed("after is not a value returned by this API", field="after", rule="format") from exc
    rows, watermark = await store.snapshot(pool, updated_since=updated_since, after=position, limit=limit)
    items = [to_contract(store.to_read(row)).model_dump(mode="json") for row in rows]
    next_after = f"{rows[-1]['updated_at'].isoformat()}|{rows[-1]['id']}" if len(rows) == limit else None
    return {"items": items, "next": next_after, "watermark": watermark.isoformat()}


@router.post("/actors/batch", summary="Actors by ids, in the order asked (null when unknown)")
async def actors_batch(body: filters.BatchRequest, pool: DbPool, principal: OptionalPrincipal) -> dict[str, Any]:
    wanted = body.uuids()
    rows = await store.get_actors(pool, [w for w in wanted if w is not None])
    by_id = {row["id"]: row for row in rows}
    items: list[dict[str, Any] | None] = []
    for actor_id in wanted:
        row = by_id.get(actor_id) if actor_id else None
        items.append(
            None
            if row is None
            else store.to_read(row, with_contact=can_see_contact(principal, str(actor_id))).model_dump(mode="json")
        )
    return {"items": items}


@router.get("/actors/{actor_id}", response_model=ActorRead, summary="One actor")
async def get_actor(actor_id: str, pool: DbPool, principal: ContactReader, response: Response) -> ActorRead:
    row = await store.get_actor(pool, parse_id(actor_id))
    if row is None:
        raise NotFound(f"no actor {actor_id}")
    actor = store.to_read(row, with_contact=can_see_contact(principal, actor_id))
    response.headers["ETag"] = etag(actor)
    return actor


@router.put("/actors/{actor_id}", response_model=ActorRead, summary="Replace an actor's fields (If-Match: version)")
async def update_actor(
    actor_id: str,
    body: ActorUpdate,
    principal: CurrentPrincipal,
    pool: DbPool,
    response: Response,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> ActorRead:
    require_editor(principal, actor_id)
    expected = parse_if_match(if_match)
    uid = parse_id(actor_id)
    async with pool.acquire() as conn, conn.transaction():
        current = await store.get_actor(conn, uid, for_update=True)
        if current is None:
            raise NotFound(f"no actor {actor_id}")
        if current["version"] != expected:
            raise versions.stale_version("actor", actor_id, expected, current["version"])
        if principal.role == Role.ACTOR and body.kind != current["kind"]:
            raise Forbidden("an actor cannot change its own kind")
        await ensure_identifiers_free(conn, body, exclude=uid)
        try:
            row = await store.update_actor(conn, uid, body, expected)
        except asyncpg.UniqueViolationError as exc:
            raise _unique_violation(exc) from exc
        assert row is not None
        actor = store.to_read(row)
        await emit(conn, ActorUpdated(actor=to_contract(actor)), actor)
    response.headers["ETag"] = etag(actor)
    return actor


@router.post(
    "/actors/{actor_id}/archive", response_model=ActorRead, summary="Archive an actor (kept: others reference it)"
)
async def archive_actor(
    actor_id: str,
    principal: CurrentPrincipal,
    pool: DbPool,
    response: Response,
    if_match: Annotated[str | None, Header(alias="If-Match")] = None,
) -> ActorRead:
    require_editor(principal, actor_id)
    uid = parse_id(actor_id)
    expected = parse_if_match(if_match) if if_match is not None else None
    async with pool.acquire() as conn, conn.transaction():
        current = await store.get_actor(conn, uid, for_update=True)
        if current is None:
            raise NotFound(f"no actor {actor_id}")
        if expected is not None and current["version"] != expected:
            raise versions.stale_version("actor", actor_id, expected, current["version"])
        if current["status"] == "archived":
            actor = store.to_read(current)
        else:
            row = await store.set_status(conn, uid, "archived", None)
            assert row is not None
            actor = store.to_read(row)
            await emit(conn, ActorArchived(actor=to_contract(actor)), actor)
    response.headers["ETag"] = etag(actor)
    return actor


@router.get("/actors", summary="Search actors")
async def search_actors(
    pool: DbPool,
    principal: OptionalPrincipal,
    text: Annotated[
        str | None, Query(max_length=200, description="French full text, accents and typos tolerated")
    ] = None,
    kinds: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI query list
    themes: Annotated[list[str], Query()] = [],  # noqa: B006
    service_types: Annotated[list[str], Query()] = [],  # noqa: B006
    territory: Annotated[list[str], Query(description="INSEE codes: COM-25056, EPCI-…, DEP-25, REG-27")] = [],  # noqa: B006
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float | None, Query(gt=0, le=1000)] = None,
    in_qpv: bool | None = None,
    include_archived: bool = False,
    sort: Annotated[store.SortOrder | None, Query()] = None,
    first: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: str | None = None,
    with_total: bool = False,
) -> dict[str, Any]:
    from services.contracts.vocabularies import ACTOR_KINDS_BY_CODE, SERVICE_TYPES_BY_CODE, THEMES_BY_CODE

    for name, values, vocabulary in (
        ("kinds", kinds, ACTOR_KINDS_BY_CODE),
        ("themes", themes, THEMES_BY_CODE),
        ("service_types", service_types, SERVICE_TYPES_BY_CODE),
    ):
        filters.check_vocabulary(name, values, vocabulary)
    codes = filters.territory_codes(territory)
    near = filters.near(lat, lon, radius_km)
    query = store.ActorSearch(
        text=(text or "").strip() or None,
        kinds=kinds,
        themes=themes,
        service_types=service_types,
        territories=codes,
        near=near,
        in_qpv=in_qpv,
        include_archived=include_archived,
        sort=sort,
    )
    try:
        page = await store.search_actors(pool, query, first=first, after=after, with_total=with_total)
    except ValueError as exc:
        field = "after" if "cursor" in str(exc) else "sort"
        raise ValidationFailed(str(exc), field=field, rule="invalid") from exc
    edges = []
    for row, distance, cursor in page.rows:
        actor = store.to_read(row, with_contact=can_see_contact(principal, str(row["id"])))
        actor.distance_km = round(distance, 3) if distance is not None else None
        edges.append({"cursor": cursor, "node": actor.model_dump(mode="json")})
    return {
        "edges": edges,
        "page_info": {"has_next_page": page.has_next, "end_cursor": edges[-1]["cursor"] if edges else None},
        "total_count": page.total,
    }


@router.post("/actors/import", summary="Bulk import a CSV file (idempotent on identifiers or source_id)")
async def import_actors(
    request: Request, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> dict[str, Any]:
    require_creator(principal)

    async def lines() -> Any:
        async for line in imports.decode_lines(request.stream()):
            yield line

    report = await imports.import_stream(pool, lines())
    return report.as_dict()


# --- vocabularies --------------------------------------------------------------------------------


def _terms(terms: tuple[Term, ...]) -> list[dict[str, str]]:
    return [{"code": t.code, "label": t.label} for t in terms]


@router.get("/vocabularies/themes", summary="Themes (stable codes, French labels)")
async def list_themes() -> list[dict[str, str]]:
    return _terms(THEMES)


@router.get("/vocabularies/service-types", summary="Service types")
async def list_service_types() -> list[dict[str, str]]:
    return _terms(SERVICE_TYPES)


@router.get("/vocabularies/actor-kinds", summary="Actor kinds")
async def list_actor_kinds() -> list[dict[str, str]]:
    return _terms(ACTOR_KINDS)
