"""The directory's REST API: register, edit, archive, search and snapshot ESS actors and local authorities.

Routes parse the request, call a use case of `service` and shape its answer; the rules live in `rules`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from services.common import filters, versions
from services.common.app import DbPool
from services.common.auth import CurrentPrincipal, OptionalPrincipal, Principal, ServiceIdentity, principal_or_service
from services.common.idempotency import Idempotent
from services.common.rules import Instant
from services.contracts.vocabularies import (
    ACTOR_KINDS,
    ACTOR_KINDS_BY_CODE,
    SERVICE_TYPES,
    SERVICE_TYPES_BY_CODE,
    THEMES,
    THEMES_BY_CODE,
    Term,
)
from services.directory import imports, rules, service, store
from services.directory.model import (
    ActorCreate,
    ActorPatch,
    ActorRead,
    ActorUpdate,
    ClaimRead,
    EmailBody,
    MemberInvite,
    MemberRead,
    PersonMemberships,
)

MAX_PAGE = 100

router = APIRouter(prefix="/v1", tags=["directory"])

# Services call for themselves on two routes only: the matching notifier reads the contact of the actor it
# writes to (addresses never travel in events), and the events and matching replicas refill from the snapshot.
ContactReader = Annotated[Principal | ServiceIdentity | None, Depends(principal_or_service("matching"))]
SnapshotReader = Annotated[Principal | ServiceIdentity | None, Depends(principal_or_service("events", "matching"))]
# The gateway, signing people in, looks persons up and opens claims with its own identity (nobody else may).
GatewayCaller = Annotated[Principal | ServiceIdentity | None, Depends(principal_or_service("gateway"))]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def etag(actor: ActorRead) -> str:
    return versions.etag(actor.version)


# --- actors ------------------------------------------------------------------------------------


@router.post("/actors", status_code=201, response_model=ActorRead, summary="Register an actor")
async def register_actor(
    body: ActorCreate, principal: CurrentPrincipal, pool: DbPool, response: Response, once: Idempotent
) -> ActorRead | Response:
    actor = await service.register_actor(pool, principal, body, once)
    if isinstance(actor, Response):
        return actor  # the first answer to this idempotency key
    response.headers.update(service.created_headers(actor))
    return actor


@router.get("/actors/snapshot", summary="Every actor, paged by watermark (for replicas)")
async def actors_snapshot(
    pool: DbPool,
    caller: SnapshotReader,
    updated_since: Instant | None = None,
    after: Annotated[str | None, Query(description="next from the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    page = await service.snapshot(pool, caller, updated_since=updated_since, after=after, limit=limit)
    return {
        "items": [actor.model_dump(mode="json") for actor in page.actors],
        "next": page.next,
        "watermark": page.watermark.isoformat(),
    }


@router.post("/actors/batch", summary="Actors by ids, in the order asked (null when unknown)")
async def actors_batch(body: filters.BatchRequest, pool: DbPool, principal: OptionalPrincipal) -> dict[str, Any]:
    found = await service.actors_by_ids(pool, principal, body.uuids())
    return {"items": [None if actor is None else actor.model_dump(mode="json") for actor in found]}


@router.get("/actors/{actor_id}", response_model=ActorRead, summary="One actor")
async def get_actor(actor_id: str, pool: DbPool, principal: ContactReader, response: Response) -> ActorRead:
    actor = await service.get_actor(pool, principal, actor_id)
    response.headers["ETag"] = etag(actor)
    return actor


@router.put("/actors/{actor_id}", response_model=ActorRead, summary="Replace an actor's fields (If-Match: version)")
async def update_actor(
    actor_id: str,
    body: ActorUpdate,
    principal: CurrentPrincipal,
    pool: DbPool,
    response: Response,
    if_match: IfMatch = None,
) -> ActorRead:
    actor = await service.update_actor(pool, principal, actor_id, body, if_match)
    response.headers["ETag"] = etag(actor)
    return actor


@router.patch(
    "/actors/{actor_id}",
    response_model=ActorRead,
    summary="Change some of an actor's fields (If-Match: version, optional)",
    description="Only the fields given change; nested values (contact, activities, location) are replaced whole. "
    "Each field obeys the rules of PUT; null removes an optional field. With If-Match, the edit applies only "
    "to that version (409 otherwise).",
)
async def patch_actor(
    actor_id: str,
    body: ActorPatch,
    principal: CurrentPrincipal,
    pool: DbPool,
    response: Response,
    if_match: IfMatch = None,
) -> ActorRead:
    actor = await service.patch_actor(pool, principal, actor_id, body, if_match)
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
    if_match: IfMatch = None,
) -> ActorRead:
    actor = await service.archive_actor(pool, principal, actor_id, if_match)
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
    page = await service.search_actors(pool, principal, query, first=first, after=after, with_total=with_total)
    edges = [{"cursor": cursor, "node": actor.model_dump(mode="json")} for cursor, actor in page.edges]
    return {
        "edges": edges,
        "page_info": {"has_next_page": page.has_next, "end_cursor": edges[-1]["cursor"] if edges else None},
        "total_count": page.total,
    }


@router.post("/actors/import", summary="Bulk import a CSV file (idempotent on identifiers or source_id)")
async def import_actors(request: Request, principal: CurrentPrincipal, pool: DbPool) -> dict[str, Any]:
    rules.require_creator(principal)  # before the body is read

    async def lines() -> Any:
        async for line in imports.decode_lines(request.stream()):
            yield line

    report = await imports.import_stream(pool, lines())
    return report.as_dict()


# --- persons and memberships ----------------------------------------------------------------------


@router.post("/persons/lookup", response_model=PersonMemberships, summary="A person by e-mail, and its actors")
async def lookup_person(body: EmailBody, pool: DbPool, caller: GatewayCaller) -> PersonMemberships:
    return await service.lookup_person(pool, caller, body.email)


@router.get("/persons/{person_id}", response_model=PersonMemberships, summary="A person, and its actors")
async def get_person(person_id: str, pool: DbPool, caller: GatewayCaller) -> PersonMemberships:
    return await service.get_person(pool, caller, person_id)


@router.post(
    "/actors/{actor_id}/members", status_code=201, response_model=MemberRead, summary="Invite a member by e-mail"
)
async def invite_member(actor_id: str, body: MemberInvite, principal: CurrentPrincipal, pool: DbPool) -> MemberRead:
    return await service.invite_member(pool, principal, actor_id, body)


@router.get("/actors/{actor_id}/members", response_model=list[MemberRead], summary="An actor's members")
async def list_members(actor_id: str, principal: CurrentPrincipal, pool: DbPool) -> list[MemberRead]:
    return await service.list_members(pool, principal, actor_id)


@router.delete("/actors/{actor_id}/members/{person_id}", status_code=204, summary="Remove a member")
async def remove_member(actor_id: str, person_id: str, principal: CurrentPrincipal, pool: DbPool) -> Response:
    await service.remove_member(pool, principal, actor_id, person_id)
    return Response(status_code=204)


@router.post("/claims", response_model=list[ClaimRead], summary="Claims of the actors whose contact is this address")
async def claim_actors(body: EmailBody, pool: DbPool, caller: GatewayCaller) -> list[ClaimRead]:
    return await service.claim_actors(pool, caller, body.email)


@router.post("/claims/{claim_id}/confirm", response_model=PersonMemberships, summary="Confirm a pending claim")
async def confirm_claim(claim_id: str, pool: DbPool, caller: GatewayCaller) -> PersonMemberships:
    return await service.confirm_claim(pool, caller, claim_id, None)


@router.post("/erasures", summary="Erase a person's data (GDPR art. 17): the person, its memberships and claims")
async def erase_person(body: EmailBody, principal: CurrentPrincipal, pool: DbPool) -> dict[str, int]:
    return await service.erase_person(pool, principal, body.email)


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
