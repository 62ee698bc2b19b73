"""The matching service's REST API: needs, their matches and the match lifecycle, and partners' webhooks."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, Query, Response
from pydantic import Field

from services.common import filters, versions
from services.common.app import AppSettings, DbPool
from services.common.auth import CurrentPrincipal, Principal
from services.common.errors import Forbidden, MaillageError, NotFound, ValidationFailed, parse_id
from services.common.idempotency import Idempotent
from services.common.rules import storable_instant
from services.matching import rules, service, store, webhooks
from services.matching.model import (
    AttemptRead,
    DeliveryRead,
    MatchRead,
    MatchResponse,
    MatchSelect,
    NeedClose,
    NeedCreate,
    NeedRead,
    NeedStatus,
    NeedUpdate,
    WebhookCreate,
    WebhookRead,
    WebhookUpdate,
    WebhookWithSecret,
)

router = APIRouter(prefix="/v1", tags=["matching"])


async def need_or_404(conn: asyncpg.Connection | asyncpg.Pool, need_id: str) -> asyncpg.Record:
    row = await store.get_need(conn, parse_id(need_id, "need"))
    if row is None:
        raise NotFound(f"no need {need_id}")
    return row


# --- needs ------------------------------------------------------------------------------------------------


@router.post("/needs", status_code=201, response_model=NeedRead, summary="Publish a need (matching starts at once)")
async def publish_need(
    body: NeedCreate, principal: CurrentPrincipal, pool: DbPool, response: Response, once: Idempotent
) -> NeedRead | Response:
    need = await service.publish_need(pool, principal, body, once)
    if isinstance(need, Response):
        return need  # the first answer to this idempotency key
    response.headers.update(service.need_headers(need))
    return need


@router.get("/needs", summary="Needs, newest first")
async def list_needs(
    pool: DbPool,
    principal: CurrentPrincipal,
    owner_id: str | None = None,
    status: Annotated[list[NeedStatus] | None, Query()] = None,
    first: Annotated[int, Query(ge=1, le=100)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    cursor = None
    if after:
        try:
            stamp, _, last = base64.urlsafe_b64decode(after.encode()).decode().partition("|")
            cursor = (storable_instant(datetime.fromisoformat(stamp)), uuid.UUID(last))
        except ValueError as exc:
            raise ValidationFailed("after: not a cursor of this list", field="after", rule="format") from exc
    owner = parse_id(owner_id, "owner") if owner_id else None
    rows = await store.list_needs(
        pool, owner_id=owner, statuses=[s.value for s in status] if status else None, after=cursor, limit=first + 1
    )
    owners = {oid: await store.owner_of(pool, oid) for oid in {row["owner_id"] for row in rows[:first]}}
    items = [store.need_read(row, owners[row["owner_id"]]).model_dump(mode="json") for row in rows[:first]]
    # Each item's own cursor too, so that a client may resume after any of them (the gateway's edges).
    cursors = [
        base64.urlsafe_b64encode(f"{row['created_at'].isoformat()}|{row['id']}".encode()).decode()
        for row in rows[:first]
    ]
    next_cursor = cursors[-1] if len(rows) > first else None
    return {"items": items, "cursors": cursors, "next": next_cursor}


@router.post("/needs/batch", summary="Needs by ids, in the order asked (null when unknown)")
async def needs_batch(body: filters.BatchRequest, pool: DbPool, principal: CurrentPrincipal) -> dict[str, Any]:
    wanted = body.uuids()
    rows = {row["id"]: row for row in await store.get_needs(pool, [w for w in wanted if w is not None])}
    owners = {row["id"]: row for row in await store.owners_of(pool, list({r["owner_id"] for r in rows.values()}))}
    return {
        "items": [
            store.need_read(rows[w], owners.get(rows[w]["owner_id"])).model_dump(mode="json")
            if w is not None and w in rows
            else None
            for w in wanted
        ]
    }


@router.get("/needs/{need_id}", response_model=NeedRead, summary="One need")
async def get_need(need_id: str, pool: DbPool, principal: CurrentPrincipal, response: Response) -> NeedRead:
    row = await need_or_404(pool, need_id)
    need = store.need_read(row, await store.owner_of(pool, row["owner_id"]))
    response.headers["ETag"] = versions.etag(need.version)
    return need


@router.put("/needs/{need_id}", response_model=NeedRead, summary="Edit an open need (If-Match); it is matched again")
async def update_need(
    need_id: str,
    body: NeedUpdate,
    principal: CurrentPrincipal,
    pool: DbPool,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> NeedRead:
    expected = versions.parse_if_match(if_match, "need", "/v1/needs/{id}")
    need = await service.update_need(pool, principal, need_id, body, expected)
    response.headers["ETag"] = versions.etag(need.version)
    return need


@router.post("/needs/{need_id}/close", response_model=NeedRead, summary="Close, fulfil or cancel a need")
async def close_need(need_id: str, body: NeedClose, principal: CurrentPrincipal, pool: DbPool) -> NeedRead:
    return await service.close_need(pool, principal, need_id, body)


@router.get(
    "/needs/{need_id}/matches", response_model=list[MatchRead], summary="The actors matched to a need, best first"
)
async def need_matches(need_id: str, principal: CurrentPrincipal, pool: DbPool) -> list[MatchRead]:
    row = await need_or_404(pool, need_id)
    if not rules.can_read_need_matches(principal, str(row["owner_id"])):
        raise Forbidden(rules.NEED_MATCHES_ARE_PRIVATE)
    return [store.match_read(r) for r in await store.list_matches(pool, need_id=row["id"])]


@router.get("/actors/{actor_id}/matches", response_model=list[MatchRead], summary="The needs an actor was matched to")
async def actor_matches(actor_id: str, principal: CurrentPrincipal, pool: DbPool) -> list[MatchRead]:
    aid = parse_id(actor_id, "actor")
    if not rules.can_read_actor_matches(principal, actor_id):
        raise Forbidden(rules.ACTOR_MATCHES_ARE_PRIVATE)
    return [store.match_read(r) for r in await store.list_matches(pool, actor_id=aid)]


class MatchesOf(filters.BatchRequest):
    """Needs (or actors) whose best matches are wanted, and how many each (the gateway's `first`)."""

    first: int = Field(20, ge=1, le=100)


def _matches_or_problem(rows: list[asyncpg.Record] | None, refusal: MaillageError | None) -> dict[str, Any]:
    """One item of a matches batch: its matches, or the problem its single route would have answered."""
    if refusal is not None:
        return {"problem": refusal.problem()}
    return {"matches": [store.match_read(r).model_dump(mode="json") for r in rows or []]}


@router.post(
    "/needs/matches/batch", summary="The best matches of several needs, in one call (the single route's rules)"
)
async def needs_matches_batch(body: MatchesOf, principal: CurrentPrincipal, pool: DbPool) -> dict[str, Any]:
    wanted = body.uuids()
    needs = {row["id"]: row for row in await store.get_needs(pool, [w for w in wanted if w is not None])}
    readable = [nid for nid, row in needs.items() if rules.can_read_need_matches(principal, str(row["owner_id"]))]
    found = await store.best_matches_of(pool, by="need_id", ids=readable, first=body.first)
    items = []
    for asked, nid in zip(body.ids, wanted, strict=True):
        refusal: MaillageError | None = None
        if nid is None or nid not in needs:
            refusal = NotFound(f"no need {asked}")
        elif nid not in found:
            refusal = Forbidden(rules.NEED_MATCHES_ARE_PRIVATE)
        items.append(_matches_or_problem(found.get(nid) if nid else None, refusal))
    return {"items": items}


@router.post(
    "/actors/matches/batch", summary="The best matches of several actors, in one call (the single route's rules)"
)
async def actors_matches_batch(body: MatchesOf, principal: CurrentPrincipal, pool: DbPool) -> dict[str, Any]:
    wanted = body.uuids()
    readable = [aid for aid in wanted if aid is not None and rules.can_read_actor_matches(principal, str(aid))]
    found = await store.best_matches_of(pool, by="actor_id", ids=readable, first=body.first)
    items = []
    for asked, aid in zip(body.ids, wanted, strict=True):
        refusal: MaillageError | None = None
        if aid is None:
            refusal = NotFound(f"no actor {asked}")
        elif aid not in found:
            refusal = Forbidden(rules.ACTOR_MATCHES_ARE_PRIVATE)
        items.append(_matches_or_problem(found.get(aid) if aid else None, refusal))
    return {"items": items}


# --- the match lifecycle -----------------------------------------------------------------------------------


@router.get("/matches/{match_id}", response_model=MatchRead, summary="One match and why it was made")
async def get_match(match_id: str, principal: CurrentPrincipal, pool: DbPool) -> MatchRead:
    row = await store.get_match(pool, parse_id(match_id, "match"))
    if row is None:
        raise NotFound(f"no match {match_id}")
    if not rules.can_read_match(principal, str(row["owner_id"]), str(row["actor_id"])):
        raise Forbidden(rules.MATCH_IS_PRIVATE)
    return store.match_read(row)


@router.post("/matches/batch", summary="Matches by ids, in the order asked (null when unknown or not yours)")
async def matches_batch(body: filters.BatchRequest, principal: CurrentPrincipal, pool: DbPool) -> dict[str, Any]:
    wanted = body.uuids()
    rows = {row["id"]: row for row in await store.get_matches(pool, [w for w in wanted if w is not None])}
    visible = {
        match_id: row
        for match_id, row in rows.items()
        if rules.can_read_match(principal, str(row["owner_id"]), str(row["actor_id"]))
    }
    return {
        "items": [
            store.match_read(visible[w]).model_dump(mode="json") if w is not None and w in visible else None
            for w in wanted
        ]
    }


@router.post("/matches/{match_id}/view", response_model=MatchRead, summary="The actor saw the need")
async def view_match(match_id: str, principal: CurrentPrincipal, pool: DbPool) -> MatchRead:
    return await service.view_match(pool, principal, match_id)


@router.post("/matches/{match_id}/respond", response_model=MatchRead, summary="The actor is interested or declines")
async def respond_to_match(match_id: str, body: MatchResponse, principal: CurrentPrincipal, pool: DbPool) -> MatchRead:
    return await service.respond_to_match(pool, principal, match_id, body)


@router.post(
    "/matches/{match_id}/select", response_model=MatchRead, summary="The authority selects an interested actor"
)
async def select_match(match_id: str, body: MatchSelect, principal: CurrentPrincipal, pool: DbPool) -> MatchRead:
    return await service.select_match(pool, principal, match_id, body)


# --- webhooks -----------------------------------------------------------------------------------------------

WEBHOOK_COLUMNS = "id, url, event_types, description, status, disabled_reason, created_at, updated_at"


def webhook_read(row: asyncpg.Record) -> WebhookRead:
    return WebhookRead(**{**dict(row), "id": str(row["id"]), "event_types": list(row["event_types"])})


async def _endpoint(pool: DbPool | asyncpg.Connection, principal: Principal, webhook_id: str) -> asyncpg.Record:
    rules.require_partner(principal)
    row = await pool.fetchrow(
        f"SELECT {WEBHOOK_COLUMNS}, owner FROM webhook_endpoints WHERE id = $1", parse_id(webhook_id, "webhook")
    )
    if row is None or (not principal.is_admin and row["owner"] != principal.subject):
        raise NotFound(f"no webhook {webhook_id}")
    return row


async def _check_url(url: str, settings: AppSettings) -> None:
    try:
        await webhooks.check_target(url, settings.webhook_allow_private)
    except webhooks.TargetRefused as exc:
        raise ValidationFailed(f"url: {exc}", field="url", rule="public_address") from exc


@router.post(
    "/webhooks", status_code=201, response_model=WebhookWithSecret, summary="Register an endpoint (secret shown once)"
)
async def create_webhook(
    body: WebhookCreate, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> WebhookWithSecret:
    rules.require_partner(principal)
    await _check_url(str(body.url), settings)
    secret = webhooks.new_secret()
    row = await pool.fetchrow(
        f"""INSERT INTO webhook_endpoints (id, owner, url, event_types, description, secret)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {WEBHOOK_COLUMNS}""",
        uuid.uuid4(),
        principal.subject,
        str(body.url),
        body.event_types,
        body.description,
        secret,
    )
    return WebhookWithSecret(**webhook_read(row).model_dump(), secret=secret)


@router.get("/webhooks", response_model=list[WebhookRead], summary="Your endpoints")
async def list_webhooks(principal: CurrentPrincipal, pool: DbPool) -> list[WebhookRead]:
    rules.require_partner(principal)
    rows = await pool.fetch(
        f"SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at",
        None if principal.is_admin else principal.subject,
    )
    return [webhook_read(r) for r in rows]


@router.get("/webhooks/{webhook_id}", response_model=WebhookRead, summary="One endpoint")
async def get_webhook(webhook_id: str, principal: CurrentPrincipal, pool: DbPool) -> WebhookRead:
    return webhook_read(await _endpoint(pool, principal, webhook_id))


@router.patch(
    "/webhooks/{webhook_id}", response_model=WebhookRead, summary="Change URL, event types, description or state"
)
async def update_webhook(
    webhook_id: str, body: WebhookUpdate, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> WebhookRead:
    row = await _endpoint(pool, principal, webhook_id)
    if body.url is not None:
        await _check_url(str(body.url), settings)
    status = None if body.enabled is None else ("active" if body.enabled else "disabled")
    updated = await pool.fetchrow(
        f"""UPDATE webhook_endpoints SET url = coalesce($2, url), event_types = coalesce($3, event_types),
               description = coalesce($4, description), status = coalesce($5, status),
               disabled_reason = CASE WHEN $5 = 'active' THEN NULL WHEN $5 = 'disabled' THEN 'paused by its owner'
                                      ELSE disabled_reason END,
               updated_at = now()
            WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}""",
        row["id"],
        str(body.url) if body.url is not None else None,
        body.event_types,
        body.description,
        status,
    )
    return webhook_read(updated)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    response_model=WebhookWithSecret,
    summary="A new secret (shown once); the previous one keeps signing beside it for 24 hours",
)
async def rotate_secret(webhook_id: str, principal: CurrentPrincipal, pool: DbPool) -> WebhookWithSecret:
    row = await _endpoint(pool, principal, webhook_id)
    secret = webhooks.new_secret()
    updated = await pool.fetchrow(
        f"""UPDATE webhook_endpoints
            SET previous_secret = secret, previous_secret_expires_at = now() + $3::interval,
                secret = $2, updated_at = now()
            WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}""",
        row["id"],
        secret,
        webhooks.SECRET_OVERLAP,
    )
    return WebhookWithSecret(**webhook_read(updated).model_dump(), secret=secret)


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Delete an endpoint and its delivery log")
async def delete_webhook(webhook_id: str, principal: CurrentPrincipal, pool: DbPool) -> Response:
    row = await _endpoint(pool, principal, webhook_id)
    await pool.execute("DELETE FROM webhook_endpoints WHERE id = $1", row["id"])
    return Response(status_code=204)


DELIVERY_COLUMNS = (
    "id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at, last_error, created_at, delivered_at"
)


def delivery_read(row: asyncpg.Record) -> DeliveryRead:
    return DeliveryRead(**{**dict(row), "endpoint_id": str(row["endpoint_id"])})


@router.get("/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryRead], summary="An endpoint's deliveries")
async def list_deliveries(
    webhook_id: str,
    principal: CurrentPrincipal,
    pool: DbPool,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed|abandoned)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryRead]:
    row = await _endpoint(pool, principal, webhook_id)
    rows = await pool.fetch(
        f"""SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
            WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC LIMIT $3""",
        row["id"],
        status,
        limit,
    )
    return [delivery_read(r) for r in rows]


async def _delivery(pool: DbPool, principal: Principal, delivery_id: str) -> asyncpg.Record:
    row = await pool.fetchrow(f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1", delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    await _endpoint(pool, principal, str(row["endpoint_id"]))
    return row


@router.get("/webhook-deliveries/{delivery_id}/attempts", response_model=list[AttemptRead], summary="Every attempt")
async def list_attempts(delivery_id: str, principal: CurrentPrincipal, pool: DbPool) -> list[AttemptRead]:
    await _delivery(pool, principal, delivery_id)
    rows = await pool.fetch(
        """SELECT attempt, at, status_code, error, duration_ms FROM webhook_attempts
           WHERE delivery_id = $1 ORDER BY attempt""",
        delivery_id,
    )
    return [AttemptRead(**dict(r)) for r in rows]


@router.post(
    "/webhook-deliveries/{delivery_id}/retry", response_model=DeliveryRead, summary="Send again (same webhook-id)"
)
async def retry_delivery(delivery_id: str, principal: CurrentPrincipal, pool: DbPool) -> DeliveryRead:
    await _delivery(pool, principal, delivery_id)
    row = await pool.fetchrow(
        f"""UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now() WHERE id = $1
            RETURNING {DELIVERY_COLUMNS}""",
        delivery_id,
    )
    await pool.execute("SELECT pg_notify('maillage_deliveries', 'retry')")
    return delivery_read(row)
