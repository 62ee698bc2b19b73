"""The events service's registration routes: register, list, read, cancel, approve or reject, erase a person."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from services.common import errors, filters
from services.common.app import AppSettings, DbPool
from services.common.auth import CurrentPrincipal, OptionalPrincipal
from services.common.idempotency import Idempotent
from services.events import feeds, pages, service
from services.events.model import RegistrationCreate, RegistrationDecision, RegistrationRead, RegistrationStatus

router = APIRouter()


@router.post(
    "/events/{event_id}/registrations",
    status_code=201,
    response_model=RegistrationRead,
    summary="Register an actor or a person (confirmed, waitlisted, or pending approval)",
)
async def register(
    event_id: str,
    body: RegistrationCreate,
    principal: CurrentPrincipal,
    pool: DbPool,
    settings: AppSettings,
    response: Response,
    once: Idempotent,
) -> RegistrationRead | Response:
    registered = await service.register_participant(
        pool, event_id, body, principal=principal, settings=settings, once=once
    )
    if isinstance(registered, Response):  # the first answer to this idempotency key
        return registered
    registration, location = registered
    response.headers["Location"] = location
    return registration


@router.get(
    "/events/{event_id}/registrations",
    response_model=list[RegistrationRead],
    summary="An event's registrations in arrival order (organizers and admins)",
)
async def event_registrations(
    event_id: str,
    principal: CurrentPrincipal,
    pool: DbPool,
    status: Annotated[list[RegistrationStatus] | None, Query()] = None,
) -> list[RegistrationRead]:
    _, registrations = await service.event_registrations(pool, event_id, principal, status)
    return registrations


@router.post(
    "/events/registrations/batch",
    summary="The registrations of several events, in one call (each item: the single route's answer or its problem)",
)
async def events_registrations_batch(
    body: filters.BatchRequest, principal: CurrentPrincipal, pool: DbPool
) -> dict[str, Any]:
    return {"items": await service.registrations_of_events(pool, body.ids, body.uuids(), principal)}


# Kept at its place among the registration routes (the order the API document lists them in).
router.include_router(feeds.registrations_export)


@router.get("/registrations/{registration_id}", response_model=RegistrationRead, summary="One registration")
async def get_registration(registration_id: str, principal: CurrentPrincipal, pool: DbPool) -> RegistrationRead:
    return await service.get_registration(pool, registration_id, principal)


@router.post(
    "/registrations/{registration_id}/cancel", response_model=RegistrationRead, summary="Cancel a registration"
)
async def cancel_registration(
    registration_id: str,
    pool: DbPool,
    settings: AppSettings,
    principal: OptionalPrincipal,
    token: Annotated[
        str | None, Query(max_length=64, description="The link's token, for persons without account")
    ] = None,
) -> RegistrationRead:
    if principal is None and token is None:
        raise errors.Unauthenticated("send Authorization: Bearer <token>, or the token of the e-mail's link")
    return await service.cancel_registration(pool, registration_id, principal=principal, token=token, settings=settings)


router.include_router(pages.router)


@router.post(
    "/registrations/{registration_id}/approve", response_model=RegistrationRead, summary="Accept a pending registration"
)
async def approve_registration(
    registration_id: str, body: RegistrationDecision, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> RegistrationRead:
    return await service.approve_registration(
        pool, registration_id, body.comment, principal=principal, settings=settings
    )


@router.post(
    "/registrations/{registration_id}/reject", response_model=RegistrationRead, summary="Refuse a pending registration"
)
async def reject_registration(
    registration_id: str, body: RegistrationDecision, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> RegistrationRead:
    return await service.reject_registration(
        pool, registration_id, body.comment, principal=principal, settings=settings
    )


class ErasureRequest(BaseModel):
    email: str = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@router.post("/erasures", summary="Erase a person's data (GDPR art. 17): registrations anonymised, counts kept")
async def erase_person(body: ErasureRequest, principal: CurrentPrincipal, pool: DbPool) -> dict[str, int]:
    return {"registrations_anonymised": await service.erase_person(pool, body.email, principal=principal)}
