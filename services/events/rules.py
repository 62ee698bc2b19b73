"""The events workflow's rules: who may do what, an event's lifecycle, seats and the waiting list (pure, no I/O).

They decide on typed states (`model.EventState`, `model.RegistrationState`) and enums, never on records or status
strings, and raise the domain error a caller sees when a rule refuses. The use cases (`service.py`) read the
states under the right locks and apply the decisions; the store counts the seats.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from services.common import versions
from services.common.auth import Principal, Role
from services.common.errors import Conflict, Forbidden, MaillageError, NotFound, ValidationFailed
from services.events.model import (
    LIVE_REGISTRATION,
    ActorStatus,
    EventState,
    EventStatus,
    ParticipantKind,
    Refusal,
    RegistrationMode,
    RegistrationState,
    RegistrationStatus,
    ReplicaActor,
)

# --- who may do what ----------------------------------------------------------------------------------

NOT_A_MANAGER = "only the event's organizers (their actor or collectivity callers) and admins may do this"


def manages(principal: Principal | None, organizer_ids: Iterable[str]) -> bool:
    """Admins, and the `actor` or `collectivity` callers of one of the event's organizers."""
    if principal is None:
        return False
    return principal.is_admin or any(
        principal.role in (Role.ACTOR, Role.COLLECTIVITY) and principal.actor_id == oid for oid in organizer_ids
    )


def require_manager(principal: Principal | None, event: EventState) -> None:
    if not manages(principal, event.organizer_ids):
        raise Forbidden(NOT_A_MANAGER)


def may_see(principal: Principal | None, event: EventState) -> bool:
    """A draft exists only for its organizers and admins; a published or cancelled event for everyone."""
    return event.status != EventStatus.draft or manages(principal, event.organizer_ids)


def may_see_person(principal: Principal | None, event: EventState) -> bool:
    """Whether a registration's person (name, e-mail, comment) is shown: to the event's managers only."""
    return manages(principal, event.organizer_ids)


def listed_statuses(principal: Principal | None, organizer_id: uuid.UUID) -> list[EventStatus]:
    """The statuses of an organizer's events a caller sees listed: its drafts only for itself and admins."""
    statuses = [EventStatus.published, EventStatus.cancelled]
    if manages(principal, [str(organizer_id)]):
        statuses.append(EventStatus.draft)
    return statuses


def searched_statuses(include_cancelled: bool) -> list[EventStatus]:
    """A public search lists published events, and cancelled ones when asked (drafts never)."""
    return [EventStatus.published] + ([EventStatus.cancelled] if include_cancelled else [])


def require_organizer(principal: Principal, organizer_ids: Iterable[str]) -> None:
    """An event is created by one of its organizers (or an admin)."""
    if not manages(principal, organizer_ids):
        raise Forbidden("you organize an event only as one of its organizers (or as an admin)")


def check_organizers(organizer_ids: Iterable[str], actors: Mapping[uuid.UUID, ReplicaActor]) -> None:
    """422 unless every organizer is an active actor of the replica (the first one that is not is named)."""
    for oid in organizer_ids:
        actor = actors.get(uuid.UUID(oid))
        if actor is None:
            raise ValidationFailed(
                f"organizer_ids: {oid} is not an actor of the directory", field="organizer_ids", rule="exists"
            )
        if actor.status != ActorStatus.active:
            raise ValidationFailed(
                f"organizer_ids: {actor.name} is {actor.status}, not active", field="organizer_ids", rule="active"
            )


def require_actor_registration(
    principal: Principal, actor_id: str, actor: ReplicaActor | None, event: EventState
) -> None:
    """An actor registers itself (organizers and admins may register any actor), and only an active one."""
    if not (principal.acts_for(actor_id) or manages(principal, event.organizer_ids)):
        raise Forbidden("an actor registers itself (organizers and admins may register any actor)")
    if actor is None or actor.status != ActorStatus.active:
        raise ValidationFailed(
            f"actor_id: {actor_id} is not an active actor of the directory", field="actor_id", rule="exists"
        )


def may_cancel(principal: Principal | None, registration: RegistrationState, event: EventState) -> bool:
    """The event's managers, the registered actor's callers, and the caller who registered a person."""
    if principal is None:
        return False
    if manages(principal, event.organizer_ids):
        return True
    if registration.actor_id is not None and principal.acts_for(registration.actor_id):
        return True
    return registration.participant_kind == ParticipantKind.person and registration.created_by == principal.subject


def require_reader(principal: Principal, registration: RegistrationState, event: EventState) -> None:
    """A registration is read by those who may cancel it, and by partners."""
    if not may_cancel(principal, registration, event) and principal.role != Role.PARTNER:
        raise Forbidden("a registration is for its participant, the event's organizers, partners and admins")


def require_canceller(
    principal: Principal | None, registration: RegistrationState, event: EventState, *, by_token: bool
) -> None:
    """A valid link's token cancels without an account; otherwise the caller must be allowed to."""
    if not by_token and not may_cancel(principal, registration, event):
        raise Forbidden("a registration is cancelled by its participant, the event's organizers or an admin")


# --- an event's lifecycle -----------------------------------------------------------------------------

# draft → published → cancelled, and a draft may be cancelled too; a cancelled event is final.
TRANSITIONS: dict[EventStatus, frozenset[EventStatus]] = {
    EventStatus.draft: frozenset({EventStatus.published, EventStatus.cancelled}),
    EventStatus.published: frozenset({EventStatus.cancelled}),
    EventStatus.cancelled: frozenset(),
}


def may_move(current: EventStatus, to: EventStatus) -> bool:
    return to in TRANSITIONS[current]


def created_status(publish: bool) -> EventStatus:
    return EventStatus.published if publish else EventStatus.draft


def check_creatable(ends_at: datetime, now: datetime) -> None:
    if ends_at <= now:
        raise ValidationFailed("ends_at: the event is already over", field="ends_at", rule="future")


def check_publishable(event: EventState, now: datetime) -> None:
    if not may_move(event.status, EventStatus.published):
        raise Conflict(f"the event is already {event.status}", field="status", rule="draft")
    if event.ends_at <= now:
        raise Conflict("the event is already over", field="ends_at", rule="future")


def check_cancellable(event: EventState) -> None:
    if not may_move(event.status, EventStatus.cancelled):
        raise Conflict("the event is already cancelled", field="status", rule="cancelled")


def check_editable(event: EventState, expected_version: int, asked_as: str) -> None:
    """A cancelled event is not edited any more; an edit must be made on the current version (`asked_as`: the id
    as the caller wrote it, which the conflict repeats)."""
    if event.status == EventStatus.cancelled:
        raise Conflict("the event is cancelled: it is not edited any more", field="status", rule="cancelled")
    if event.version != expected_version:
        raise versions.stale_version("event", asked_as, expected_version, event.version)


def check_capacity(capacity: int | None, confirmed: int) -> None:
    """A capacity never drops below the seats already given (it may be removed: no limit)."""
    if capacity is not None and capacity < confirmed:
        raise Conflict(
            f"capacity {capacity} is below the {confirmed} confirmed registrations: cancel some first",
            field="capacity",
            rule="below_confirmed",
        )


def announced(event_status: EventStatus) -> bool:
    """Whether a change of the event is told to the other services (a draft's edits are not)."""
    return event_status == EventStatus.published


# --- seats and the waiting list -----------------------------------------------------------------------


def seat_for(capacity: int | None, confirmed: int, waitlisted: int) -> RegistrationStatus:
    """Where an admitted registration goes: a seat while one is free and nobody waits, else the waiting list.

    Nobody jumps the line: with someone waiting a new registration waits too, even if a seat is free.
    """
    if capacity is None or (confirmed < capacity and waitlisted == 0):
        return RegistrationStatus.confirmed
    return RegistrationStatus.waitlisted


def admission(event: EventState, now: datetime) -> RegistrationStatus | Refusal:
    """The outcome of a new registration for `event` (seat counts read under its row lock).

    The register path runs this rule in SQL (`register_participant`, migration 0001) so that the lock, the
    count and the insert are one round trip; it is written here as its specification, and a test holds the
    SQL to it.
    """
    if event.status != EventStatus.published:
        return Refusal.not_published
    if event.registration_mode == RegistrationMode.closed:
        return Refusal.closed
    if event.starts_at <= now:
        return Refusal.started
    if event.registration_mode == RegistrationMode.approval:
        return RegistrationStatus.pending
    return seat_for(event.capacity, event.confirmed, event.waitlisted)


REFUSALS = {  # a refused registration → (detail, field, rule) of the 409
    Refusal.not_published: ("the event is not published: no registration", "status", "published"),
    Refusal.closed: ("this event does not take registrations", "registration_mode", "closed"),
    Refusal.started: ("the event has started: registrations are closed", "starts_at", "not_started"),
}


def refusal_error(refusal: Refusal, event_id: str, kind: ParticipantKind) -> MaillageError:
    """The error a refused registration answers."""
    if refusal == Refusal.duplicate:
        field = "actor_id" if kind == ParticipantKind.actor else "person.email"
        return Conflict("this participant is already registered for the event", field=field, rule="unique")
    if refusal not in REFUSALS:  # the event vanished between reading it and registering
        return NotFound(f"no event {event_id}")
    detail, field, rule = REFUSALS[refusal]
    return Conflict(detail, field=field, rule=rule)


def seats_to_fill(capacity: int | None, confirmed: int, waitlisted: int) -> int:
    """How many of the waiting list are promoted now (first come, first served: the first in arrival order)."""
    free = waitlisted if capacity is None else min(capacity - confirmed, waitlisted)
    return max(free, 0)


def frees_a_seat(status: RegistrationStatus) -> bool:
    """Whether cancelling a registration in `status` gives a seat to the waiting list."""
    return status == RegistrationStatus.confirmed


def check_live(registration: RegistrationState) -> None:
    if registration.status not in LIVE_REGISTRATION:
        raise Conflict(f"the registration is already {registration.status}", field="status", rule="live")


def decided_status(registration: RegistrationState, event: EventState, *, approve: bool) -> RegistrationStatus:
    """Where a pending registration goes when an organizer approves it (a seat or the line) or rejects it."""
    if registration.status != RegistrationStatus.pending:
        raise Conflict(f"the registration is {registration.status}, not pending", field="status", rule="pending")
    if not approve:
        return RegistrationStatus.rejected
    if event.status != EventStatus.published:
        raise Conflict(f"the event is {event.status}", field="status", rule="published")
    return seat_for(event.capacity, event.confirmed, event.waitlisted)
