"""The directory's use cases: one function per thing a caller can do, each write in one unit of work.

HTTP routes (`api.py`) and the CSV import (`imports.py`, used by the CLI and the dev stack) call these functions;
they decide with `rules` and read and write with `store`. A write opens one `UnitOfWork`: its transaction holds
the state change, the idempotency key's answer and the outbox rows, so they are kept or dropped together.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi.responses import JSONResponse

from services.common import errors, versions
from services.common.auth import Principal
from services.common.errors import Conflict, NotFound, ValidationFailed
from services.common.idempotency import Idempotency
from services.common.outbox import PreparedEvent
from services.common.rules import storable_instant
from services.common.uow import UnitOfWork
from services.contracts.events import ActorArchived, ActorRegistered, ActorUpdated, ActorV1, EventPayload
from services.directory import rules, store
from services.directory.model import (
    ActorCreate,
    ActorPatch,
    ActorRead,
    ActorStatus,
    ActorUpdate,
    ClaimRead,
    MemberActor,
    MemberInvite,
    MemberRead,
    MembershipRead,
    PersonMemberships,
    PersonRead,
    to_contract,
)
from services.directory.rules import Caller, ImportOutcome

SERVICE = "directory"
READ_PATH = "/v1/actors/{id}"


def parse_id(actor_id: str) -> uuid.UUID:
    return errors.parse_id(actor_id, "actor")


def expected_version(if_match: str | None, *, required: bool) -> int | None:
    """The version an If-Match names (428 when `required` and missing, 422 when not a version)."""
    if if_match is None and not required:
        return None
    return versions.parse_if_match(if_match, "actor", READ_PATH)


def created_headers(actor: ActorRead) -> dict[str, str]:
    """What a registration answers besides its body (kept with an idempotency key, so a replay answers them too)."""
    return {"ETag": versions.etag(actor.version), "Location": f"/v1/actors/{actor.id}"}


async def _emit(uow: UnitOfWork, payload: EventPayload, actor: ActorRead) -> None:
    # Keyed by the actor: its events keep their order on one partition.
    await uow.emit(payload, key=actor.id, subject=actor.id)


async def _ensure_identifiers_free(
    conn: asyncpg.Connection, fields: ActorCreate, exclude: uuid.UUID | None = None
) -> None:
    holder = await store.find_holder(conn, fields, exclude)
    if holder is not None:
        raise rules.identifier_taken(*holder)


async def _locked(conn: asyncpg.Connection, uid: uuid.UUID, actor_id: str) -> ActorRead:
    row = await store.get_actor(conn, uid, for_update=True)
    if row is None:
        raise NotFound(f"no actor {actor_id}")
    return store.to_read(row)


# --- writes ---------------------------------------------------------------------------------------------


async def register_actor(
    pool: asyncpg.Pool, principal: Principal, fields: ActorCreate, once: Idempotency | None = None
) -> ActorRead | JSONResponse:
    """Register an actor (ActorRegistered); with an idempotency key, a retry answers the first answer (a response)."""
    rules.require_creator(principal)
    async with UnitOfWork(pool, service=SERVICE) as uow:
        if once is not None and (first := await once.claim(uow.conn, fields)) is not None:
            return first
        await _ensure_identifiers_free(uow.conn, fields)
        try:
            row = await store.insert_actor(uow.conn, fields, rules.origin_of(principal))
        except asyncpg.UniqueViolationError as exc:
            raise rules.identifier_raced(exc.constraint_name) from exc
        actor = store.to_read(row)
        await _emit(uow, ActorRegistered(actor=to_contract(actor)), actor)
        if once is not None:
            await once.remember(uow.conn, 201, actor, created_headers(actor))
    return actor


async def update_actor(
    pool: asyncpg.Pool, principal: Principal, actor_id: str, fields: ActorUpdate, if_match: str | None
) -> ActorRead:
    """Replace an actor's editable fields (ActorUpdated); `if_match` names the version edited and is required."""
    rules.require_editor(principal, actor_id)
    expected = expected_version(if_match, required=True)
    uid = parse_id(actor_id)
    async with UnitOfWork(pool, service=SERVICE) as uow:
        current = await _locked(uow.conn, uid, actor_id)
        rules.check_version(actor_id, expected, current.version)
        return await _replace(uow, principal, current, fields)


async def patch_actor(
    pool: asyncpg.Pool, principal: Principal, actor_id: str, patch: ActorPatch, if_match: str | None
) -> ActorRead:
    """Change only the fields given (ActorUpdated); `if_match`, when given, names the version edited."""
    rules.require_editor(principal, actor_id)
    expected = expected_version(if_match, required=False)
    uid = parse_id(actor_id)
    async with UnitOfWork(pool, service=SERVICE) as uow:
        current = await _locked(uow.conn, uid, actor_id)
        rules.check_version(actor_id, expected, current.version)
        return await _replace(uow, principal, current, rules.patched(current, patch))


async def _replace(uow: UnitOfWork, principal: Principal, current: ActorRead, fields: ActorUpdate) -> ActorRead:
    """Write `fields` over the locked `current` (its version checked by the caller) and say ActorUpdated."""
    rules.require_kind_kept(principal, current.kind, fields.kind)
    uid = uuid.UUID(current.id)
    await _ensure_identifiers_free(uow.conn, fields, exclude=uid)
    try:
        row = await store.update_actor(uow.conn, uid, fields, current.version)
    except asyncpg.UniqueViolationError as exc:
        raise rules.identifier_raced(exc.constraint_name) from exc
    assert row is not None  # the row is locked and at the expected version
    actor = store.to_read(row)
    if rules.contact_address_changed(current.contact, actor.contact):
        await store.void_pending_claims(uow.conn, uid)
    await _emit(uow, ActorUpdated(actor=to_contract(actor)), actor)
    return actor


async def archive_actor(pool: asyncpg.Pool, principal: Principal, actor_id: str, if_match: str | None) -> ActorRead:
    """Archive an actor (ActorArchived; kept, since others reference it); archiving twice answers the actor as is."""
    rules.require_editor(principal, actor_id)
    uid = parse_id(actor_id)
    expected = expected_version(if_match, required=False)
    async with UnitOfWork(pool, service=SERVICE) as uow:
        current = await _locked(uow.conn, uid, actor_id)
        rules.check_version(actor_id, expected, current.version)
        if not rules.needs_archiving(current):
            return current
        row = await store.set_status(uow.conn, uid, ActorStatus.archived, None)
        assert row is not None  # locked, and not archived yet
        actor = store.to_read(row)
        await _emit(uow, ActorArchived(actor=to_contract(actor)), actor)
    return actor


# --- reads (no transaction, no event) -------------------------------------------------------------------


async def get_actor(pool: asyncpg.Pool, caller: Caller, actor_id: str) -> ActorRead:
    row = await store.get_actor(pool, parse_id(actor_id))
    if row is None:
        raise NotFound(f"no actor {actor_id}")
    return store.to_read(row, with_contact=rules.can_see_contact(caller, actor_id))


async def actors_by_ids(
    pool: asyncpg.Pool, caller: Caller, wanted: Sequence[uuid.UUID | None]
) -> list[ActorRead | None]:
    """The actors asked for, in the order asked (None for an unknown or malformed id)."""
    rows = await store.get_actors(pool, [w for w in wanted if w is not None])
    by_id = {row["id"]: row for row in rows}
    found: list[ActorRead | None] = []
    for actor_id in wanted:
        row = by_id.get(actor_id) if actor_id else None
        found.append(
            None if row is None else store.to_read(row, with_contact=rules.can_see_contact(caller, str(actor_id)))
        )
    return found


@dataclass
class SearchPage:
    edges: list[tuple[str, ActorRead]]  # cursor, actor (with its distance when searched near a point)
    has_next: bool
    total: int | None


async def search_actors(
    pool: asyncpg.Pool, caller: Caller, query: store.ActorSearch, *, first: int, after: str | None, with_total: bool
) -> SearchPage:
    try:
        page = await store.search_actors(pool, query, first=first, after=after, with_total=with_total)
    except ValueError as exc:
        field = "after" if "cursor" in str(exc) else "sort"
        raise ValidationFailed(str(exc), field=field, rule="invalid") from exc
    edges = []
    for row, distance, cursor in page.rows:
        actor = store.to_read(row, with_contact=rules.can_see_contact(caller, str(row["id"])))
        actor.distance_km = round(distance, 3) if distance is not None else None
        edges.append((cursor, actor))
    return SearchPage(edges, page.has_next, page.total)


@dataclass
class Snapshot:
    actors: list[ActorV1]
    next: str | None  # where the next page starts (`after`), when this one is full
    watermark: datetime


async def snapshot(
    pool: asyncpg.Pool, caller: Caller, *, updated_since: datetime | None, after: str | None, limit: int
) -> Snapshot:
    """A page of every actor, archived included, as replicas hold them (the event payload: no contact)."""
    rules.require_snapshot_reader(caller)
    position = None
    if after:
        try:
            stamp, _, last_id = after.partition("|")
            position = (storable_instant(datetime.fromisoformat(stamp)), uuid.UUID(last_id))
        except ValueError as exc:
            raise ValidationFailed("after is not a value returned by this API", field="after", rule="format") from exc
    rows, watermark = await store.snapshot(pool, updated_since=updated_since, after=position, limit=limit)
    actors = [to_contract(store.to_read(row)) for row in rows]
    following = f"{rows[-1]['updated_at'].isoformat()}|{rows[-1]['id']}" if len(rows) == limit else None
    return Snapshot(actors, following, watermark)


# --- bulk import ----------------------------------------------------------------------------------------


class BatchRejected(Exception):
    """A strict batch met identifiers it cannot apply at once: the caller retries its rows one by one."""


@dataclass
class BatchOutcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # line, reason


async def import_batch(pool: asyncpg.Pool, rows: list[tuple[int, ActorCreate]], *, strict: bool) -> BatchOutcome:
    """Create or update the actors of validated import rows (line, actor) in one transaction, one event each.

    A row designates its actor by its identifiers (`rules.identity`); rows of one batch share none. When
    `strict`, identifiers another actor holds raise `BatchRejected` (nothing is written); otherwise such a row
    is rejected with its reason and the others are written.
    """
    try:
        async with UnitOfWork(pool, service=SERVICE) as uow:
            return await _apply(uow, rows, strict=strict)
    except asyncpg.UniqueViolationError as exc:
        if strict:
            raise BatchRejected from exc
        return BatchOutcome(
            rejected=[(line, f"{exc.constraint_name}: already used by another actor") for line, _ in rows]
        )


async def _apply(uow: UnitOfWork, rows: list[tuple[int, ActorCreate]], *, strict: bool) -> BatchOutcome:
    outcome = BatchOutcome()
    conn = uow.conn
    existing = await store.lock_by_identifiers(conn, [key for _, actor in rows for key in rules.identity(actor)])
    index: dict[tuple[str, str], asyncpg.Record] = {}
    for row in existing:
        for column in rules.IDENTIFIERS:
            if row[column]:
                index[(column, row[column])] = row
    now = datetime.now(UTC)
    inserts: list[tuple[Any, ...]] = []
    fresh: set[str] = set()
    events: list[tuple[str, EventPayload | PreparedEvent]] = []
    for line, actor in rows:
        matches = {index[k]["id"]: index[k] for k in rules.identity(actor) if k in index}
        if len(matches) > 1:
            if strict:
                raise BatchRejected
            outcome.rejected.append(
                (line, "its identifiers belong to different actors: " + ", ".join(str(i) for i in matches))
            )
            continue
        if not matches:
            actor_id = uuid.uuid4()
            row_values = store.row_values(actor)
            inserts.append((actor_id, now, now, *row_values.values()))
            fresh.add(str(actor_id))
            # Built without a round trip: equal to `to_contract` of the row the COPY below writes.
            data = {"actor": store.contract_data(actor_id, 1, row_values, now)}
            events.append((str(actor_id), PreparedEvent(ActorRegistered.ce_type, ActorRegistered.topic, data)))
            outcome.created += 1
            continue
        current = store.to_read(next(iter(matches.values())))
        proposed = store.read_from_values(
            uuid.UUID(current.id), current.version, store.row_values(actor), current.created_at, current.updated_at
        )
        decision = rules.import_outcome(current, proposed)
        if decision is ImportOutcome.unchanged:
            outcome.unchanged += 1
            continue
        written = await store.update_actor(conn, uuid.UUID(current.id), actor, None)
        assert written is not None  # locked above
        if decision is ImportOutcome.reactivated:
            written = await store.set_status(conn, uuid.UUID(current.id), ActorStatus.active, None) or written
        read = store.to_read(written)
        if rules.contact_address_changed(current.contact, read.contact):
            await store.void_pending_claims(conn, uuid.UUID(current.id))
        events.append((read.id, ActorUpdated(actor=to_contract(read))))
        outcome.updated += 1
    if inserts:
        await store.copy_new_actors(conn, rows[0][1], inserts)
    # New actors' keys are fresh ids nobody else writes: no key lock needed for them.
    await uow.emit_many(events, fresh_keys=fresh)
    return outcome


# --- persons and memberships (personal data: no event says any of it) ------------------------------------


def _person(row: asyncpg.Record) -> PersonRead:
    return PersonRead(id=str(row["id"]), email=row["email"], name=row["name"], created_at=row["created_at"])


async def _with_memberships(
    conn: asyncpg.Connection | asyncpg.Pool, person: asyncpg.Record | None
) -> PersonMemberships:
    if person is None:
        return PersonMemberships(person=None, memberships=[])
    rows = await store.memberships_of(conn, person["id"])
    return PersonMemberships(
        person=_person(person),
        memberships=[
            MembershipRead(
                actor=MemberActor(id=str(r["actor_id"]), name=r["actor_name"], kind=r["actor_kind"]),
                role=r["role"],
                created_at=r["created_at"],
            )
            for r in rows
        ],
    )


async def lookup_person(pool: asyncpg.Pool, caller: Caller, email: str) -> PersonMemberships:
    """The person of an address and the active actors it acts for (for the gateway signing people in)."""
    rules.require_gateway(caller)
    return await _with_memberships(pool, await store.person_by_email(pool, email))


async def get_person(pool: asyncpg.Pool, caller: Caller, person_id: str) -> PersonMemberships:
    rules.require_gateway(caller)
    row = await store.person_by_id(pool, errors.parse_id(person_id, "person"))
    if row is None:
        raise NotFound(f"no person {person_id}")
    return await _with_memberships(pool, row)


async def _manager_role(conn: asyncpg.Connection | asyncpg.Pool, principal: Principal, actor: uuid.UUID) -> str | None:
    person = rules.person_of(principal)
    return None if person is None else await store.membership_role(conn, person, actor)


async def _actor_row(conn: asyncpg.Connection, uid: uuid.UUID, actor_id: str) -> asyncpg.Record:
    row = await store.origin_and_contact(conn, uid)
    if row is None:
        raise NotFound(f"no actor {actor_id}")
    return row


async def invite_member(pool: asyncpg.Pool, principal: Principal, actor_id: str, invite: MemberInvite) -> MemberRead:
    """Make the person of this address (created when new, with this name) a member of the actor, with its role."""
    uid = parse_id(actor_id)
    async with UnitOfWork(pool, service=SERVICE) as uow:
        rules.require_members_manager(principal, actor_id, await _manager_role(uow.conn, principal, uid))
        actor = await _actor_row(uow.conn, uid, actor_id)
        if actor["status"] != ActorStatus.active:
            raise Conflict(f"actor {actor_id} is archived: it has no new members", field="actor", rule="active")
        person = await store.insert_person(uow.conn, invite.email, invite.name)
        membership = await store.upsert_membership(uow.conn, person["id"], uid, invite.role.value)
    return MemberRead(person=_person(person), role=membership["role"], created_at=membership["created_at"])


async def list_members(pool: asyncpg.Pool, principal: Principal, actor_id: str) -> list[MemberRead]:
    uid = parse_id(actor_id)
    rules.require_members_manager(principal, actor_id, await _manager_role(pool, principal, uid))
    rows = await store.members_of(pool, uid)
    return [MemberRead(person=_person(r), role=r["role"], created_at=r["member_since"]) for r in rows]


async def remove_member(pool: asyncpg.Pool, principal: Principal, actor_id: str, person_id: str) -> None:
    uid = parse_id(actor_id)
    person = errors.parse_id(person_id, "person")
    async with UnitOfWork(pool, service=SERVICE) as uow:
        rules.require_members_manager(principal, actor_id, await _manager_role(uow.conn, principal, uid))
        if not await store.delete_membership(uow.conn, person, uid):
            raise NotFound(f"person {person_id} is no member of actor {actor_id}")


async def claim_actors(pool: asyncpg.Pool, caller: Caller, email: str) -> list[ClaimRead]:
    """Open a claim (pending) for each actor staff registered or imported whose contact is this address and that
    it is no member of yet; a claim already pending is answered again. The gateway confirms them when the address
    proves itself (its sign-in link)."""
    rules.require_gateway(caller)
    origins = [origin.value for origin in rules.CLAIMABLE_ORIGINS]
    claims: list[ClaimRead] = []
    async with UnitOfWork(pool, service=SERVICE) as uow:
        person = await store.person_by_email(uow.conn, email)
        for actor in await store.claimable_by(uow.conn, email, origins):
            if person is not None and await store.membership_role(uow.conn, person["id"], actor["id"]) is not None:
                continue
            claim = await store.pending_claim(uow.conn, actor["id"], email)
            claim = claim or await store.insert_claim(uow.conn, actor["id"], email)
            claims.append(
                ClaimRead(
                    id=str(claim["id"]),
                    actor=MemberActor(id=str(actor["id"]), name=actor["name"], kind=actor["kind"]),
                    status=claim["status"],
                    created_at=claim["created_at"],
                )
            )
    return claims


async def confirm_claim(pool: asyncpg.Pool, caller: Caller, claim_id: str, name: str | None) -> PersonMemberships:
    """The claim's address proved itself: its person (created when new) becomes the actor's admin member.

    Refused (CONFLICT) when the claim is no longer pending, or its actor's contact is no longer that address."""
    rules.require_gateway(caller)
    cid = errors.parse_id(claim_id, "claim")
    async with UnitOfWork(pool, service=SERVICE) as uow:
        claim = await store.lock_claim(uow.conn, cid)
        if claim is None:
            raise NotFound(f"no claim {claim_id}")
        actor = await _actor_row(uow.conn, claim["actor_id"], str(claim["actor_id"]))
        if not rules.claim_still_valid(claim["status"], actor["status"], actor["contact_email"], claim["email"]):
            if claim["status"] == "pending":
                await store.decide_claim(uow.conn, cid, "void")
            raise Conflict(
                f"claim {claim_id} is no longer valid (voided, confirmed, or the actor's contact changed)",
                field="claim",
                rule="pending",
            )
        person = await store.insert_person(uow.conn, claim["email"], name or claim["email"].split("@")[0])
        await store.upsert_membership(uow.conn, person["id"], claim["actor_id"], "admin")
        await store.decide_claim(uow.conn, cid, "confirmed")
        return await _with_memberships(uow.conn, person)


async def erase_person(pool: asyncpg.Pool, principal: Principal, email: str) -> dict[str, int]:
    """Erase a person (GDPR art. 17): the person, its memberships and the claims made from its address."""
    principal.require_role("admin")
    async with UnitOfWork(pool, service=SERVICE) as uow:
        persons, memberships, claims = await store.erase_person(uow.conn, email)
    return {"persons_deleted": persons, "memberships_deleted": memberships, "claims_deleted": claims}
