"""The matching service's REST API: needs, their matches and the match lifecycle, and partners' webhooks."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from pydantic import Field

from services.common import filters, versions
from services.common.app import AppSettings, DbPool
from services.common.auth import CurrentPrincipal
from services.common.errors import MaillageError, ValidationFailed
from services.common.idempotency import Idempotent
from services.common.rules import Instant, storable_instant
from services.matching import service
from services.matching.model import (
    AttemptRead,
    DeliveryRead,
    MatchRead,
    MatchResponse,
    MatchSelect,
    MatchStatus,
    NeedClose,
    NeedCreate,
    NeedPatch,
    NeedRead,
    NeedStatus,
    NeedUpdate,
    WebhookCreate,
    WebhookRead,
    WebhookUpdate,
    WebhookWithSecret,
)

router = APIRouter(prefix="/v1", tags=["matching"])


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
    needs, more = await service.needs_page(pool, owner_id=owner_id, statuses=status, after=cursor, first=first)
    # Each item's own cursor too, so that a client may resume after any of them (the gateway's edges).
    cursors = [base64.urlsafe_b64encode(f"{n.created_at.isoformat()}|{n.id}".encode()).decode() for n in needs]
    return {
        "items": [need.model_dump(mode="json") for need in needs],
        "cursors": cursors,
        "next": cursors[-1] if more else None,
    }


@router.post("/needs/batch", summary="Needs by ids, in the order asked (null when unknown)")
async def needs_batch(body: filters.BatchRequest, pool: DbPool, principal: CurrentPrincipal) -> dict[str, Any]:
    needs = await service.needs_by_ids(pool, body.uuids())
    return {"items": [need.model_dump(mode="json") if need is not None else None for need in needs]}


@router.get("/needs/{need_id}", response_model=NeedRead, summary="One need")
async def get_need(need_id: str, pool: DbPool, principal: CurrentPrincipal, response: Response) -> NeedRead:
    need = await service.get_need(pool, need_id)
    response.headers["ETag"] = versions.etag(need.version)
    return need


EDITED = (
    "Matching it again first withdraws its unanswered matches whose actors the need, as edited, no longer takes "
    "(their kind, their place, a score under the minimum), each with a `match.withdrawn` event; an answered match "
    "stays, and a withdrawn actor is not proposed again."
)


@router.put(
    "/needs/{need_id}",
    response_model=NeedRead,
    summary="Edit an open need (If-Match); it is matched again",
    description=EDITED,
)
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


@router.patch(
    "/needs/{need_id}",
    response_model=NeedRead,
    summary="Change some of an open need's fields (If-Match: version, optional); it is matched again",
    description="Only the fields given change; nested values (location, perimeter) are replaced whole. Each field "
    "obeys the rules of PUT, and the need it makes is checked whole. With If-Match, the edit applies only to that "
    "version (409 otherwise). " + EDITED,
)
async def patch_need(
    need_id: str,
    body: NeedPatch,
    principal: CurrentPrincipal,
    pool: DbPool,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> NeedRead:
    expected = versions.parse_if_match(if_match, "need", "/v1/needs/{id}") if if_match is not None else None
    need = await service.patch_need(pool, principal, need_id, body, expected)
    response.headers["ETag"] = versions.etag(need.version)
    return need


@router.post("/needs/{need_id}/close", response_model=NeedRead, summary="Close, fulfil or cancel a need")
async def close_need(need_id: str, body: NeedClose, principal: CurrentPrincipal, pool: DbPool) -> NeedRead:
    return await service.close_need(pool, principal, need_id, body)


@router.get(
    "/needs/{need_id}/matches", response_model=list[MatchRead], summary="The actors matched to a need, best first"
)
async def need_matches(need_id: str, principal: CurrentPrincipal, pool: DbPool) -> list[MatchRead]:
    return await service.need_matches(pool, principal, need_id)


@router.get("/actors/{actor_id}/matches", response_model=list[MatchRead], summary="The needs an actor was matched to")
async def actor_matches(actor_id: str, principal: CurrentPrincipal, pool: DbPool) -> list[MatchRead]:
    return await service.actor_matches(pool, principal, actor_id)


class MatchesOf(filters.BatchRequest):
    """Needs (or actors) whose best matches are wanted, how many each (the gateway's `first`), and in which
    statuses (all when absent)."""

    first: int = Field(20, ge=1, le=100)
    statuses: list[MatchStatus] | None = Field(None, min_length=1)


class CountsOf(filters.BatchRequest):
    """Needs whose matches are counted, and since when answers count as new (none counted when absent)."""

    answered_since: Instant | None = None


def _matches_or_problems(items: list[list[MatchRead] | MaillageError]) -> dict[str, Any]:
    """A matches batch: each item's matches, or the problem its single route would have answered."""
    return {
        "items": [
            {"problem": item.problem()}
            if isinstance(item, MaillageError)
            else {"matches": [match.model_dump(mode="json") for match in item]}
            for item in items
        ]
    }


@router.post(
    "/needs/matches/batch", summary="The best matches of several needs, in one call (the single route's rules)"
)
async def needs_matches_batch(body: MatchesOf, principal: CurrentPrincipal, pool: DbPool) -> dict[str, Any]:
    found = await service.needs_best_matches(pool, principal, body.ids, body.uuids(), body.first, body.statuses)
    return _matches_or_problems(found)


@router.post(
    "/actors/matches/batch", summary="The best matches of several actors, in one call (the single route's rules)"
)
async def actors_matches_batch(body: MatchesOf, principal: CurrentPrincipal, pool: DbPool) -> dict[str, Any]:
    found = await service.actors_best_matches(pool, principal, body.ids, body.uuids(), body.first, body.statuses)
    return _matches_or_problems(found)


@router.post(
    "/needs/match-counts/batch",
    summary="Several needs' matches counted by status, in one call (the rules of a need's matches)",
)
async def needs_match_counts_batch(body: CountsOf, principal: CurrentPrincipal, pool: DbPool) -> dict[str, Any]:
    counted = await service.needs_match_counts(pool, principal, body.ids, body.uuids(), body.answered_since)
    return {
        "items": [
            {"problem": item.problem()} if isinstance(item, MaillageError) else {"counts": item.model_dump()}
            for item in counted
        ]
    }


# --- the match lifecycle -----------------------------------------------------------------------------------


@router.get("/matches/{match_id}", response_model=MatchRead, summary="One match and why it was made")
async def get_match(match_id: str, principal: CurrentPrincipal, pool: DbPool) -> MatchRead:
    return await service.get_match(pool, principal, match_id)


@router.post("/matches/batch", summary="Matches by ids, in the order asked (null when unknown or not yours)")
async def matches_batch(body: filters.BatchRequest, principal: CurrentPrincipal, pool: DbPool) -> dict[str, Any]:
    matches = await service.matches_by_ids(pool, principal, body.uuids())
    return {"items": [match.model_dump(mode="json") if match is not None else None for match in matches]}


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


@router.post(
    "/webhooks", status_code=201, response_model=WebhookWithSecret, summary="Register an endpoint (secret shown once)"
)
async def create_webhook(
    body: WebhookCreate, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> WebhookWithSecret:
    return await service.create_webhook(pool, principal, body, settings)


@router.get("/webhooks", response_model=list[WebhookRead], summary="Your endpoints")
async def list_webhooks(principal: CurrentPrincipal, pool: DbPool) -> list[WebhookRead]:
    return await service.list_webhooks(pool, principal)


@router.get("/webhooks/{webhook_id}", response_model=WebhookRead, summary="One endpoint")
async def get_webhook(webhook_id: str, principal: CurrentPrincipal, pool: DbPool) -> WebhookRead:
    return await service.get_webhook(pool, principal, webhook_id)


@router.patch(
    "/webhooks/{webhook_id}", response_model=WebhookRead, summary="Change URL, event types, description or state"
)
async def update_webhook(
    webhook_id: str, body: WebhookUpdate, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> WebhookRead:
    return await service.update_webhook(pool, principal, webhook_id, body, settings)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    response_model=WebhookWithSecret,
    summary="A new secret (shown once); the previous one keeps signing beside it for 24 hours",
)
async def rotate_secret(webhook_id: str, principal: CurrentPrincipal, pool: DbPool) -> WebhookWithSecret:
    return await service.rotate_secret(pool, principal, webhook_id)


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Delete an endpoint and its delivery log")
async def delete_webhook(webhook_id: str, principal: CurrentPrincipal, pool: DbPool) -> Response:
    await service.delete_webhook(pool, principal, webhook_id)
    return Response(status_code=204)


@router.get("/webhooks/{webhook_id}/deliveries", response_model=list[DeliveryRead], summary="An endpoint's deliveries")
async def list_deliveries(
    webhook_id: str,
    principal: CurrentPrincipal,
    pool: DbPool,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed|abandoned)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryRead]:
    return await service.list_deliveries(pool, principal, webhook_id, status, limit)


@router.get("/webhook-deliveries/{delivery_id}/attempts", response_model=list[AttemptRead], summary="Every attempt")
async def list_attempts(delivery_id: str, principal: CurrentPrincipal, pool: DbPool) -> list[AttemptRead]:
    return await service.list_attempts(pool, principal, delivery_id)


@router.post(
    "/webhook-deliveries/{delivery_id}/retry", response_model=DeliveryRead, summary="Send again (same webhook-id)"
)
async def retry_delivery(delivery_id: str, principal: CurrentPrincipal, pool: DbPool) -> DeliveryRead:
    return await service.retry_delivery(pool, principal, delivery_id)
