"""The events service's use cases: one function per thing a caller can do, each write in one unit of work.

A use case reads what it decides on (an event's row locked first, then its registration's), asks the rules
(`rules.py`), writes through the store and emits its events with `uow.emit`: the change, its events and its
e-mails commit together or not at all. HTTP routes, the actor consumer and any loop call these functions;
none of them opens a transaction or writes an outbox row itself.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from starlette.responses import Response

from services.common import versions
from services.common.auth import Principal, Role
from services.common.errors import Forbidden, NotFound, ValidationFailed, parse_id
from services.common.idempotency import Idempotency
from services.common.settings import Settings
from services.common.uow import UnitOfWork
from services.contracts.events import (
    ActorV1,
    EventCancelled,
    EventPayload,
    EventPublished,
    EventUpdated,
    RegistrationCancelled,
    RegistrationConfirmed,
    RegistrationPromoted,
    RegistrationRequested,
    RegistrationWaitlisted,
)
from services.events import emails, rules, store
from services.events.model import (
    EventCreate,
    EventRead,
    EventStatus,
    EventUpdate,
    ParticipantKind,
    Refusal,
    RegistrationChange,
    RegistrationCreate,
    RegistrationRead,
    RegistrationState,
    RegistrationStatus,
    ReplicaActor,
)

SERVICE = "events"

# A replayed first answer to an idempotency key, returned as it was sent the first time.
Replayed = Response


def _unit_of_work(pool: asyncpg.Pool) -> UnitOfWork:
    return UnitOfWork(pool, service=SERVICE)


def event_location(event_id: str) -> str:
    return f"/v1/events/{event_id}"


def registration_location(registration_id: uuid.UUID | str) -> str:
    return f"/v1/registrations/{registration_id}"


async def _visible_event(
    conn: asyncpg.Connection | asyncpg.Pool, event_id: str, principal: Principal | None, *, for_update: bool = False
) -> asyncpg.Record:
    """The event's row; a draft exists only for its organizers and admins (404 for anyone else)."""
    row = await store.get_event(conn, parse_id(event_id, "event"), for_update=for_update)
    if row is None or not rules.may_see(principal, store.event_state(row)):
        raise NotFound(f"no event {event_id}")
    return row


async def _read(conn: asyncpg.Connection | asyncpg.Pool, row: asyncpg.Record) -> EventRead:
    return (await store.events_read(conn, [row]))[0]


async def _check_organizers(conn: asyncpg.Connection, organizer_ids: list[str]) -> None:
    rules.check_organizers(organizer_ids, await store.replica_actors(conn, [uuid.UUID(o) for o in organizer_ids]))


# --- events -------------------------------------------------------------------------------------------


async def create_event(
    pool: asyncpg.Pool, body: EventCreate, *, principal: Principal, once: Idempotency
) -> EventRead | Replayed:
    """A new event by one of its organizers: a draft, or published at once (then told)."""
    rules.check_creatable(body.ends_at, store.now())
    async with _unit_of_work(pool) as uow:
        if (first := await once.claim(uow.conn, body)) is not None:
            return first
        await _check_organizers(uow.conn, body.organizer_ids)
        rules.require_organizer(principal, body.organizer_ids)
        row = await store.insert_event(uow.conn, body, rules.created_status(body.publish), principal.subject)
        event = await _read(uow.conn, row)
        if rules.announced(event.status):
            await uow.emit(EventPublished(event=event.to_contract()), key=event.id)
        headers = {"ETag": versions.etag(event.version), "Location": event_location(event.id)}
        await once.remember(uow.conn, 201, event, headers)
    return event


async def update_event(
    pool: asyncpg.Pool,
    event_id: str,
    body: EventUpdate,
    *,
    principal: Principal,
    expected_version: int,
    settings: Settings,
) -> EventRead:
    """Replace an event's fields at the version the caller edited; a larger capacity promotes from the line."""
    async with _unit_of_work(pool) as uow:
        current = await _visible_event(uow.conn, event_id, principal, for_update=True)
        state = store.event_state(current)
        rules.require_manager(principal, state)
        rules.check_editable(state, expected_version, event_id)
        added = [o for o in body.organizer_ids if o not in state.organizer_ids]
        if added:
            await _check_organizers(uow.conn, added)
        rules.check_capacity(body.capacity, state.confirmed)
        row = await store.update_event(uow.conn, state.id, body)
        if await _promote(uow, row, settings):  # the seat counts changed
            row = await store.get_event(uow.conn, state.id)
            assert row is not None
        event = await _read(uow.conn, row)
        if rules.announced(event.status):
            await uow.emit(EventUpdated(event=event.to_contract()), key=event.id)
    return event


async def publish_event(pool: asyncpg.Pool, event_id: str, *, principal: Principal) -> EventRead:
    """Publish a draft that is not over yet (then told)."""
    async with _unit_of_work(pool) as uow:
        current = await _visible_event(uow.conn, event_id, principal, for_update=True)
        state = store.event_state(current)
        rules.require_manager(principal, state)
        rules.check_publishable(state, store.now())
        event = await _read(uow.conn, await store.set_event_status(uow.conn, state.id, EventStatus.published))
        await uow.emit(EventPublished(event=event.to_contract()), key=event.id)
    return event


async def cancel_event(
    pool: asyncpg.Pool, event_id: str, reason: str | None, *, principal: Principal, settings: Settings
) -> EventRead:
    """Cancel an event and, with it, every live registration (each told and its person e-mailed)."""
    async with _unit_of_work(pool) as uow:
        current = await _visible_event(uow.conn, event_id, principal, for_update=True)
        state = store.event_state(current)
        rules.require_manager(principal, state)
        rules.check_cancellable(state)
        await store.set_event_status(uow.conn, state.id, EventStatus.cancelled, reason)
        row, cancelled = await store.cancel_live(uow.conn, state.id)
        await uow.emit_many(
            [
                (
                    str(r["id"]),
                    RegistrationCancelled(
                        registration=store.registration_read(r, with_person=False).to_contract(),
                        reason=RegistrationChange.event_cancelled.value,
                    ),
                )
                for r in cancelled
            ]
        )
        await emails.record(uow.conn, RegistrationChange.event_cancelled, cancelled, row, settings)
        event = await _read(uow.conn, row)
        await uow.emit(EventCancelled(event=event.to_contract(), reason=reason), key=event.id)
    return event


async def get_event(pool: asyncpg.Pool, event_id: str, principal: Principal | None) -> EventRead:
    return await _read(pool, await _visible_event(pool, event_id, principal))


async def search_events(
    pool: asyncpg.Pool, query: store.EventSearch, *, first: int, after: str | None, with_total: bool
) -> dict[str, Any]:
    """A page of events in chronological order, in the Relay shape the gateway maps."""
    try:
        page = await store.search_events(pool, query, first=first, after=after, with_total=with_total)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="after", rule="cursor") from exc
    reads = await store.events_read(pool, [row for row, _, _ in page.rows], [d for _, d, _ in page.rows])
    edges = [
        {"cursor": cursor, "node": event.model_dump(mode="json")}
        for event, (_, _, cursor) in zip(reads, page.rows, strict=True)
    ]
    return {
        "edges": edges,
        "page_info": {"has_next_page": page.has_next, "end_cursor": edges[-1]["cursor"] if edges else None},
        "total_count": page.total,
    }


async def organizer_events(
    pool: asyncpg.Pool, actor_id: str, principal: Principal | None, *, include_past: bool, first: int, after: str | None
) -> dict[str, Any]:
    """An organizer's events, next first (its drafts for itself and admins)."""
    aid = parse_id(actor_id, "actor")
    query = store.EventSearch(
        starts_after=None if include_past else store.now(),
        organizer=aid,
        statuses=rules.listed_statuses(principal, aid),
    )
    return await search_events(pool, query, first=first, after=after, with_total=False)


async def events_by_ids(
    pool: asyncpg.Pool, wanted: list[uuid.UUID | None], principal: Principal | None
) -> list[dict[str, Any] | None]:
    """Events in the order asked, None where unknown or not visible to the caller."""
    rows = await store.get_events(pool, [w for w in wanted if w is not None])
    visible = [row for row in rows if rules.may_see(principal, store.event_state(row))]
    by_id = {uuid.UUID(event.id): event for event in await store.events_read(pool, visible)}
    return [by_id[w].model_dump(mode="json") if w is not None and w in by_id else None for w in wanted]


async def next_events_of(
    pool: asyncpg.Pool, wanted: list[uuid.UUID | None], principal: Principal | None, *, first: int
) -> list[list[dict[str, Any]] | None]:
    """The next `first` events of each organizer asked (its drafts for itself and admins)."""
    organizers = [w for w in wanted if w is not None]
    managed = [oid for oid in organizers if rules.manages(principal, [str(oid)])]
    found = await store.next_events_of(pool, organizers, managed=managed, first=first, starts_after=store.now())
    reads = await store.events_read(pool, [row for rows in found.values() for row in rows])
    by_id = {event.id: event.model_dump(mode="json") for event in reads}
    return [[by_id[str(row["id"])] for row in found[w]] if w is not None else None for w in wanted]


async def feed_events(pool: asyncpg.Pool, query: store.EventSearch, *, limit: int) -> list[EventRead]:
    """The published and cancelled events a feed lists (`query` says since when)."""
    query.statuses = [EventStatus.published, EventStatus.cancelled]
    page = await store.search_events(pool, query, first=limit, after=None, with_total=False)
    return await store.events_read(pool, [row for row, _, _ in page.rows])


async def replica_actors(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> dict[uuid.UUID, ReplicaActor]:
    return await store.replica_actors(pool, ids)


async def replica_actor(pool: asyncpg.Pool, actor_id: str) -> ReplicaActor:
    aid = parse_id(actor_id, "actor")
    actor = (await store.replica_actors(pool, [aid])).get(aid)
    if actor is None:
        raise NotFound(f"no actor {actor_id}")
    return actor


# --- registrations ------------------------------------------------------------------------------------

PAYLOADS: dict[RegistrationChange, type[EventPayload]] = {
    RegistrationChange.pending: RegistrationRequested,
    RegistrationChange.confirmed: RegistrationConfirmed,
    RegistrationChange.waitlisted: RegistrationWaitlisted,
    RegistrationChange.promoted: RegistrationPromoted,
}


async def _tell(
    uow: UnitOfWork,
    registration: asyncpg.Record,
    event: asyncpg.Record,
    settings: Settings,
    change: RegistrationChange,
    *,
    position: int | None = None,
) -> None:
    """Emit what happened to a registration (keyed by event) and e-mail the person it concerns."""
    contract = store.registration_read(registration, with_person=False).to_contract()
    payload: EventPayload
    if change in PAYLOADS:
        payload = PAYLOADS[change](registration=contract)
    else:  # cancelled or rejected: the reason says which
        payload = RegistrationCancelled(registration=contract, reason=change.value)
    await uow.emit(payload, key=str(registration["event_id"]))
    if change == RegistrationChange.waitlisted and position is None:
        position = await store.waitlist_position(uow.conn, registration)
    await emails.record(uow.conn, change, [registration], event, settings, position=position)


async def _promote(uow: UnitOfWork, event: asyncpg.Record, settings: Settings) -> int:
    """Give the free seats to the first of the waiting list (the event row is locked); how many were promoted."""
    state = store.event_state(event)
    free = rules.seats_to_fill(state.capacity, state.confirmed, state.waitlisted)
    if free == 0:
        return 0
    for row in await store.first_waitlisted(uow.conn, state.id, free):
        promoted = await store.move(uow.conn, row, RegistrationStatus.confirmed)
        await _tell(uow, promoted, event, settings, RegistrationChange.promoted)
    return free


async def register_participant(
    pool: asyncpg.Pool,
    event_id: str,
    body: RegistrationCreate,
    *,
    principal: Principal,
    settings: Settings,
    once: Idempotency,
) -> tuple[RegistrationRead, str] | Replayed:
    """Register an actor or a person: confirmed, waitlisted, or pending approval (and its `Location`)."""
    event = await _visible_event(pool, event_id, principal)
    state = store.event_state(event)
    actor_uuid = None
    if body.actor_id is not None:
        actor_uuid = uuid.UUID(body.actor_id)
        actor = (await store.replica_actors(pool, [actor_uuid])).get(actor_uuid)
        rules.require_actor_registration(principal, body.actor_id, actor, state)
    async with _unit_of_work(pool) as uow:
        if (first := await once.claim(uow.conn, body)) is not None:
            return first
        # The event row is locked inside this one call and until the commit: seats are counted exactly.
        outcome, row, position = await store.register(
            uow.conn,
            state.id,
            actor_id=actor_uuid,
            person_name=body.person.name if body.person else None,
            person_email=body.person.email if body.person else None,
            comment=body.comment,
            created_by=principal.subject,
        )
        if isinstance(outcome, Refusal):
            kind = ParticipantKind.actor if actor_uuid else ParticipantKind.person
            raise rules.refusal_error(outcome, event_id, kind)
        assert row is not None  # a registration is inserted whenever the outcome is a status
        await _tell(uow, row, event, settings, RegistrationChange(outcome.value), position=position)
        registration = store.registration_read(
            row, with_person=rules.may_see_person(principal, state), position=position
        )
        location = registration_location(row["id"])
        await once.remember(uow.conn, 201, registration, {"Location": location})
    return registration, location


async def _registration_and_event(
    conn: asyncpg.Connection, registration_id: str
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Lock the event first, then its registration (the same order as registering, hence no deadlock)."""
    rid = parse_id(registration_id, "registration")
    found = await store.get_registration(conn, rid)
    if found is None:
        raise NotFound(f"no registration {registration_id}")
    event = await store.get_event(conn, found["event_id"], for_update=True)
    row = await store.get_registration(conn, rid, for_update=True)
    assert event is not None and row is not None
    return row, event


async def cancel_registration(
    pool: asyncpg.Pool,
    registration_id: str,
    *,
    principal: Principal | None,
    token: str | None,
    settings: Settings,
) -> RegistrationRead:
    """Cancel a live registration (by a caller allowed to, or by the e-mail link's token); a freed seat goes to
    the first of the waiting list."""
    async with _unit_of_work(pool) as uow:
        row, event = await _registration_and_event(uow.conn, registration_id)
        registration, state = store.registration_state(row), store.event_state(event)
        by_token = token is not None and emails.check_cancel_token(settings, registration.id, token)
        if token is not None and not by_token:
            raise Forbidden("this cancel link is not valid for this registration")
        rules.require_canceller(principal, registration, state, by_token=by_token)
        rules.check_live(registration)
        cancelled = await store.move(uow.conn, row, RegistrationStatus.cancelled)
        await _tell(uow, cancelled, event, settings, RegistrationChange.cancelled)
        if rules.frees_a_seat(registration.status):
            fresh = await store.get_event(uow.conn, state.id)
            assert fresh is not None
            await _promote(uow, fresh, settings)
    return store.registration_read(cancelled, with_person=by_token or rules.may_see_person(principal, state))


async def decide_registration(
    pool: asyncpg.Pool,
    registration_id: str,
    *,
    approve: bool,
    comment: str | None,
    principal: Principal,
    settings: Settings,
) -> RegistrationRead:
    """An organizer approves a pending registration (a seat, or the line when full) or rejects it."""
    async with _unit_of_work(pool) as uow:
        row, event = await _registration_and_event(uow.conn, registration_id)
        registration, state = store.registration_state(row), store.event_state(event)
        rules.require_manager(principal, state)
        status = rules.decided_status(registration, state, approve=approve)
        moved = await store.move(uow.conn, row, status, comment)
        await _tell(uow, moved, event, settings, RegistrationChange(status.value))
        position = await store.waitlist_position(uow.conn, moved)
    return store.registration_read(moved, with_person=True, position=position)


async def approve_registration(
    pool: asyncpg.Pool, registration_id: str, comment: str | None, *, principal: Principal, settings: Settings
) -> RegistrationRead:
    return await decide_registration(
        pool, registration_id, approve=True, comment=comment, principal=principal, settings=settings
    )


async def reject_registration(
    pool: asyncpg.Pool, registration_id: str, comment: str | None, *, principal: Principal, settings: Settings
) -> RegistrationRead:
    return await decide_registration(
        pool, registration_id, approve=False, comment=comment, principal=principal, settings=settings
    )


async def get_registration(pool: asyncpg.Pool, registration_id: str, principal: Principal) -> RegistrationRead:
    row = await store.get_registration(pool, parse_id(registration_id, "registration"))
    if row is None:
        raise NotFound(f"no registration {registration_id}")
    event = await store.get_event(pool, row["event_id"])
    assert event is not None
    state = store.event_state(event)
    rules.require_reader(principal, store.registration_state(row), state)
    return store.registration_read(
        row, with_person=rules.may_see_person(principal, state), position=await store.waitlist_position(pool, row)
    )


async def event_registrations(
    pool: asyncpg.Pool, event_id: str, principal: Principal, statuses: list[RegistrationStatus] | None = None
) -> tuple[uuid.UUID, list[RegistrationRead]]:
    """An event's registrations in arrival order, for its organizers and admins (and the event's id)."""
    event = await _visible_event(pool, event_id, principal)
    state = store.event_state(event)
    rules.require_manager(principal, state)
    return state.id, store.registration_reads(await store.list_registrations(pool, state.id, statuses))


async def registrations_of_events(
    pool: asyncpg.Pool, asked: list[str], wanted: list[uuid.UUID | None], principal: Principal
) -> list[dict[str, Any]]:
    """Each event's registrations or the problem the single route would answer, in the order asked."""
    events = {
        row["id"]: store.event_state(row) for row in await store.get_events(pool, [w for w in wanted if w is not None])
    }
    managed = [eid for eid, state in events.items() if rules.manages(principal, state.organizer_ids)]
    found = await store.registrations_of(pool, managed)
    items: list[dict[str, Any]] = []
    for ident, eid in zip(asked, wanted, strict=True):
        state = events.get(eid) if eid is not None else None
        if state is None or (state.status == EventStatus.draft and eid not in found):
            items.append({"problem": NotFound(f"no event {ident}").problem()})
        elif eid not in found:
            items.append({"problem": Forbidden(rules.NOT_A_MANAGER).problem()})
        else:
            items.append({"registrations": [r.model_dump(mode="json") for r in store.registration_reads(found[eid])]})
    return items


async def registration_by_link(
    pool: asyncpg.Pool, registration_id: str, token: str, settings: Settings
) -> tuple[RegistrationState, str]:
    """The registration an e-mail's cancel link names, and its event's title (403 unless the token is valid)."""
    rid = parse_id(registration_id, "registration")
    if not emails.check_cancel_token(settings, rid, token):
        raise Forbidden("this cancel link is not valid for this registration")
    row = await store.get_registration(pool, rid)
    if row is None:
        raise NotFound(f"no registration {registration_id}")
    event = await store.get_event(pool, row["event_id"])
    assert event is not None
    return store.registration_state(row), event["title"]


async def erase_person(pool: asyncpg.Pool, email: str, *, principal: Principal) -> int:
    """Anonymise a person's registrations (GDPR art. 17), counts kept; how many (admins only)."""
    principal.require_role(Role.ADMIN)
    async with _unit_of_work(pool) as uow:
        return await store.erase_person(uow.conn, email)


# --- the organizers' replica ------------------------------------------------------------------------


async def record_actor(conn: asyncpg.Connection, actor: ActorV1) -> bool:
    """Keep a newer actor state in the replica (an archived organizer flags its events); False when not newer.

    Its unit of work is the consumer's transaction, in which the message is marked processed too.
    """
    return await store.upsert_actor(conn, actor)
