"""The matching service's use cases: one function per thing a caller can do, each in one unit of work.

HTTP routes (`api`), consumers (`consumers`), the expiry loop and the replica rebuild call these functions; each
opens one `UnitOfWork`, loads what it needs from `store`, asks `rules`, writes through `store`, and is the only
place its events are born (`uow.emit`, `uow.emit_many`).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from datetime import UTC, datetime
from typing import TypeAlias, cast

import asyncpg
from fastapi.responses import JSONResponse

from services.common import versions
from services.common.auth import Principal
from services.common.errors import Forbidden, MaillageError, NotFound, ValidationFailed, parse_id
from services.common.idempotency import Idempotency
from services.common.settings import Settings
from services.common.uow import UnitOfWork
from services.contracts.events import (
    ActorV1,
    EventPayload,
    MatchFound,
    MatchResponded,
    MatchSelected,
    MatchViewed,
    MatchWithdrawn,
    NeedClosed,
    NeedPublished,
    NeedUpdated,
)
from services.matching import planner, rules, store, webhooks
from services.matching.model import (
    AttemptRead,
    DeliveryRead,
    MatchCounts,
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
    ReplicaStatus,
    WebhookCreate,
    WebhookRead,
    WebhookUpdate,
    WebhookWithSecret,
)
from services.matching.rules import Scored
from services.matching.scoring import Weights, evaluate

SERVICE = "matching"
CANDIDATE_FACTOR = 3  # SQL returns K times this many ranked candidates; Python keeps the exact top K

logger = logging.getLogger("maillage.matching")

# Where a use case runs: the pool (a transaction of its own), or a connection whose transaction it joins — a
# consumer's, which records the message as processed in the same transaction, or a replica rebuild's page.
Db: TypeAlias = asyncpg.Pool | asyncpg.Connection


class _Joined:
    """The one connection of a caller's transaction, lent to a unit of work as its pool (never released here).

    The unit of work's transaction is then a savepoint of the caller's: the caller's commit keeps both.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def acquire(self) -> asyncpg.Connection:
        return self._conn

    async def release(self, conn: object) -> None:
        return None


def unit_of_work(db: Db) -> UnitOfWork:
    """The matching service's unit of work on `db` (see `Db`)."""
    if isinstance(db, asyncpg.Pool):
        return UnitOfWork(db, service=SERVICE)
    return UnitOfWork(cast(asyncpg.Pool, _Joined(db)), service=SERVICE)


def now() -> datetime:
    return datetime.now(UTC)


# --- needs -----------------------------------------------------------------------------------------------


def need_headers(need: NeedRead) -> dict[str, str]:
    """What a creation answers besides its body (kept with an idempotency key's answer)."""
    return {"ETag": versions.etag(need.version), "Location": f"/v1/needs/{need.id}"}


async def publish_need(
    pool: asyncpg.Pool, principal: Principal, body: NeedCreate, once: Idempotency
) -> NeedRead | JSONResponse:
    """Publish a need for the caller's authority (or the one an admin names); matching starts from its event.

    With an idempotency key already used for this request, the first answer instead.
    """
    owner_id = rules.publishing_owner(principal, body.owner_id)
    try:
        owner_uuid = uuid.UUID(owner_id)
    except ValueError as exc:
        raise ValidationFailed("owner_id: not an actor id", field="owner_id", rule="format") from exc
    async with unit_of_work(pool) as uow:
        if (first := await once.claim(uow.conn, body)) is not None:
            return first
        owner = await store.owner_of(uow.conn, owner_uuid)
        kind, status = (owner["kind"], owner["status"]) if owner is not None else (None, None)
        rules.check_publisher(owner_id, kind, status)
        need = store.need_read(await store.insert_need(uow.conn, owner_uuid, body), owner)
        await uow.emit(NeedPublished(need=need.to_contract()), key=need.id)
        await once.remember(uow.conn, 201, need, need_headers(need))
    return need


async def _need_for_update(conn: asyncpg.Connection, need_id: str) -> NeedRead:
    need = await store.load_need(conn, parse_id(need_id, "need"), for_update=True)
    if need is None:
        raise NotFound(f"no need {need_id}")
    return need


async def update_need(
    pool: asyncpg.Pool, principal: Principal, need_id: str, body: NeedUpdate, expected_version: int
) -> NeedRead:
    """Edit an open need at the version the caller read; it is matched again from its event."""
    async with unit_of_work(pool) as uow:
        current = await _need_for_update(uow.conn, need_id)
        rules.require_owner(principal, current.owner_id)
        rules.check_editable(current.status, need_id, current.version, expected_version)
        row = await store.update_need(uow.conn, uuid.UUID(current.id), body, expected_version)
        assert row is not None  # locked and checked above
        need = store.need_read(row, await store.owner_of(uow.conn, row["owner_id"]))
        await uow.emit(NeedUpdated(need=need.to_contract()), key=need.id)
    return need


async def patch_need(
    pool: asyncpg.Pool, principal: Principal, need_id: str, patch: NeedPatch, expected_version: int | None
) -> NeedRead:
    """Change only the fields given of an open need (at `expected_version` when given); matched again from its
    event."""
    async with unit_of_work(pool) as uow:
        current = await _need_for_update(uow.conn, need_id)
        rules.require_owner(principal, current.owner_id)
        rules.check_version(need_id, expected_version, current.version)
        rules.check_editable(current.status, need_id, current.version, current.version)
        body = rules.patched_need(current, patch)
        row = await store.update_need(uow.conn, uuid.UUID(current.id), body, current.version)
        assert row is not None  # locked and checked above
        need = store.need_read(row, await store.owner_of(uow.conn, row["owner_id"]))
        await uow.emit(NeedUpdated(need=need.to_contract()), key=need.id)
    return need


async def close_need(pool: asyncpg.Pool, principal: Principal, need_id: str, body: NeedClose) -> NeedRead:
    """The owner closes, fulfils or cancels an open need."""
    async with unit_of_work(pool) as uow:
        current = await _need_for_update(uow.conn, need_id)
        rules.require_owner(principal, current.owner_id)
        rules.check_closable(current.status)
        return await _close(uow, uuid.UUID(current.id), NeedStatus(body.status.value), body.comment)


async def expire_due(pool: asyncpg.Pool) -> int:
    """Expire the needs whose deadline has passed (the worker's loop calls this periodically)."""
    async with unit_of_work(pool) as uow:
        due = await store.expired_needs(uow.conn)
        for row in due:
            await _close(uow, row["id"], NeedStatus.expired, None)
    if due:
        logger.info("expired %d needs", len(due))
    return len(due)


async def _close(uow: UnitOfWork, need_id: uuid.UUID, status: NeedStatus, comment: str | None) -> NeedRead:
    """No new matches for the need, its pending ones withdrawn; each change published."""
    row = await store.set_need_status(uow.conn, need_id, status, comment)
    need = store.need_read(row, await store.owner_of(uow.conn, row["owner_id"]))
    await uow.emit(NeedClosed(need=need.to_contract(), comment=comment), key=need.id)
    withdrawn = await store.withdraw(uow.conn, need_id, rules.PENDING)
    await _emit_matches(uow, MatchWithdrawn, withdrawn, need)
    return need


async def _emit_matches(
    uow: UnitOfWork, event: type[MatchFound | MatchWithdrawn], rows: list[asyncpg.Record], need: NeedRead
) -> None:
    matches = [store.match_read(row).to_contract(need.owner_id, need.title) for row in rows]
    # Keyed by need: one need's matches stay in order on one partition.
    await uow.emit_many([(need.id, event(match=match)) for match in matches], subjects=[m.id for m in matches])


# --- the match lifecycle ---------------------------------------------------------------------------------


async def _match_for_update(conn: asyncpg.Connection, match_id: str) -> asyncpg.Record:
    row = await store.get_match(conn, parse_id(match_id, "match"), for_update=True)
    if row is None:
        raise NotFound(f"no match {match_id}")
    return row


async def view_match(pool: asyncpg.Pool, principal: Principal, match_id: str) -> MatchRead:
    """The matched actor saw the need: the first time, its match is viewed and `match.viewed` says so (the need's
    authority sees it live); viewing it again changes nothing and publishes nothing."""
    async with unit_of_work(pool) as uow:
        row = await _match_for_update(uow.conn, match_id)
        rules.require_matched_actor(principal, str(row["actor_id"]), "marks")
        status = rules.viewed(MatchStatus(row["status"]))
        if status is None:
            return store.match_read(row)  # viewing again changes nothing
        updated = await store.set_match_status(uow.conn, row["id"], status, None)
        return await _emit_match(uow, MatchViewed, updated)


async def respond_to_match(pool: asyncpg.Pool, principal: Principal, match_id: str, body: MatchResponse) -> MatchRead:
    """The matched actor says it is interested, or declines (saying why)."""
    async with unit_of_work(pool) as uow:
        row = await _match_for_update(uow.conn, match_id)
        rules.require_matched_actor(principal, str(row["actor_id"]), "responds to")
        status = rules.check_response(
            MatchStatus(row["status"]), NeedStatus(row["need_status"]), MatchStatus(body.response)
        )
        updated = await store.set_match_status(uow.conn, row["id"], status, body.comment)
        return await _emit_match(uow, MatchResponded, updated)


async def select_match(pool: asyncpg.Pool, principal: Principal, match_id: str, body: MatchSelect) -> MatchRead:
    """The need's owner selects an interested actor."""
    async with unit_of_work(pool) as uow:
        row = await _match_for_update(uow.conn, match_id)
        rules.require_owner(principal, str(row["owner_id"]))
        status = rules.check_selection(MatchStatus(row["status"]))
        updated = await store.set_match_status(uow.conn, row["id"], status, body.comment)
        return await _emit_match(uow, MatchSelected, updated)


async def _emit_match(uow: UnitOfWork, event: type[EventPayload], row: asyncpg.Record) -> MatchRead:
    need = await store.load_need(uow.conn, row["need_id"])
    assert need is not None  # the match's need, read with it
    match = store.match_read(row)
    # Keyed by need: one need's matches stay in order on one partition.
    await uow.emit(event(match=match.to_contract(need.owner_id, need.title)), key=need.id, subject=match.id)
    return match


# --- matching ---------------------------------------------------------------------------------------------


async def match_need(
    db: Db, need_id: uuid.UUID, settings: Settings, spare: asyncpg.Pool | None = None, *, edited: bool = False
) -> int:
    """Store the need's top K matches above the minimum score (from its published or updated event); only new
    ones are added, and announced while the need lacks interested actors. How many were added.

    `edited` (from its updated event): first withdraw the unanswered matches whose actors the need, as it now
    is, leaves out (`_withdraw_left_out`). `spare`: a pool whose idle connection, if it has one, probes the other
    doors meanwhile (`planner.candidates`).
    """
    async with unit_of_work(db) as uow:
        need = await store.load_need(uow.conn, need_id, for_update=True)
        if need is None or not rules.is_open(need.status, need.deadline, now()):
            return 0
        if edited:
            await _withdraw_left_out(uow, need, settings)
        return await _match(uow, need, settings, spare)


async def _withdraw_left_out(uow: UnitOfWork, need: NeedRead, settings: Settings) -> None:
    """Withdraw the need's unanswered matches whose actor it no longer takes: scored again on the need as edited,
    not eligible (its kind, its place) or under the minimum score. An answered match stays for the owner to weigh,
    and a withdrawn one is never proposed again (no actor is notified twice for one need)."""
    state = await store.match_state(uow.conn, uuid.UUID(need.id))
    waiting = [actor_id for actor_id, (_, status) in state.items() if status in rules.UNANSWERED]
    if not waiting:
        return
    weights = Weights.from_settings(settings)
    profile = planner.need_profile(need)
    taken = {
        uuid.UUID(actor.id)
        for actor in await planner.profiles_of(uow.conn, need, waiting)
        if rules.kept(evaluate(profile, actor, weights), settings.match_min_score, settings.match_min_score_unconfirmed)
    }
    left_out = [actor_id for actor_id in waiting if actor_id not in taken]
    if left_out:
        withdrawn = await store.withdraw(uow.conn, uuid.UUID(need.id), rules.UNANSWERED, left_out)
        await _emit_matches(uow, MatchWithdrawn, withdrawn, need)


async def _match(uow: UnitOfWork, need: NeedRead, settings: Settings, spare: asyncpg.Pool | None = None) -> int:
    """Match a need (locked by the caller) against the whole replica: its top K, if some candidate answers it."""
    weights = Weights.from_settings(settings)
    profile = planner.need_profile(need)
    found = await planner.candidates(
        uow.conn, need, weights, settings.match_k * CANDIDATE_FACTOR, settings.match_door_budget, spare
    )
    scored: list[Scored] = []
    results = []
    for actor in found:
        result = evaluate(profile, actor, weights)
        if rules.kept(result, settings.match_min_score, settings.match_min_score_unconfirmed):
            scored.append((actor, result.score, [r.as_dict() for r in result.reasons]))
            results.append(result)
    if not rules.answered(results):
        return 0
    return await _store_matches(uow, need, rules.top(scored, settings.match_k), settings)


async def apply_actor(db: Db, actor: ActorV1, settings: Settings) -> bool:
    """Keep a newer actor state (registered, updated, archived) in the replica and, when active, match it
    against open needs. False when the replica's state was not older."""
    async with unit_of_work(db) as uow:
        if not await store.upsert_actor(uow.conn, actor):
            return False
        await _withdraw_where_left_out(uow, uuid.UUID(actor.id), settings)
        if actor.status == ReplicaStatus.active:
            await _match_actor(uow, uuid.UUID(actor.id), settings)
        return True


async def _withdraw_where_left_out(uow: UnitOfWork, actor_id: uuid.UUID, settings: Settings) -> None:
    """Withdraw the actor's matches on open needs that its new state leaves it out of: archived, every pending
    one; changed, each unanswered one whose need no longer takes it (scored again: its kind, its place, the
    minimum score). Each is announced by match.withdrawn; a withdrawn actor is never proposed again for that need."""
    row = await store.active_actor(uow.conn, actor_id)
    statuses = rules.UNANSWERED if row is not None else rules.PENDING
    found = await planner.matched_needs_of(uow.conn, actor_id, [s.value for s in statuses])
    if not found:
        return
    weights = Weights.from_settings(settings)
    profile = store.actor_profile(row) if row is not None else None
    owners = {o["id"]: o for o in await store.owners_of(uow.conn, list({r["owner_id"] for r, _ in found}))}
    for need_row, text_rank in found:
        need = store.need_read(need_row, owners.get(need_row["owner_id"]))
        if profile is not None:
            actor = dataclasses.replace(profile, text_relevance=text_rank)
            result = evaluate(planner.need_profile(need), actor, weights)
            if rules.kept(result, settings.match_min_score, settings.match_min_score_unconfirmed):
                continue
        await store.lock_need(uow.conn, need_row["id"])
        withdrawn = await store.withdraw(uow.conn, need_row["id"], statuses, [actor_id])
        await _emit_matches(uow, MatchWithdrawn, withdrawn, need)


async def _match_actor(uow: UnitOfWork, actor_id: uuid.UUID, settings: Settings) -> int:
    """A new or changed actor joins an open need's matches when it would rank in the need's top K."""
    row = await store.active_actor(uow.conn, actor_id)
    if row is None:
        return 0
    weights = Weights.from_settings(settings)
    created = 0
    open_needs = await planner.open_needs_for(uow.conn, actor_id)
    # Their owners in one query: a common theme opens a door to hundreds of open needs, most of them out of reach.
    owners = {o["id"]: o for o in await store.owners_of(uow.conn, list({r["owner_id"] for r, _ in open_needs}))}
    profile = store.actor_profile(row)  # once: only its text relevance differs from one need to the next
    for need_row, text_rank in open_needs:
        need = store.need_read(need_row, owners.get(need_row["owner_id"]))
        actor = dataclasses.replace(profile, text_relevance=text_rank)
        result = evaluate(planner.need_profile(need), actor, weights)
        if not rules.kept(result, settings.match_min_score, settings.match_min_score_unconfirmed):
            continue
        await store.lock_need(uow.conn, need_row["id"])
        scores = [score for score, _ in (await store.match_state(uow.conn, need_row["id"])).values()]
        if not rules.joins_unmatched(result, bool(scores)):
            continue
        # Its first real answer: the need is matched whole, this actor among the rest. When the need's short list
        # does not reach it (it ranks low on structure alone), it joins on its own below, so that the need has a
        # match and its next newcomers are not each a whole match again.
        if not scores and (whole := await _match(uow, need, settings)):
            created += whole
            continue
        if not rules.ranks_in_top(result.score, scores, settings.match_k):
            continue
        created += await _store_matches(
            uow, need, [(actor, result.score, [r.as_dict() for r in result.reasons])], settings
        )
    return created


async def _store_matches(uow: UnitOfWork, need: NeedRead, scored: list[Scored], settings: Settings) -> int:
    """Store the matches the need does not have yet (one statement) and announce them when the rule says so."""
    state = await store.match_state(uow.conn, uuid.UUID(need.id))
    # Never notify an actor twice for one need.
    fresh = [(aid, score, reasons) for a, score, reasons in scored if (aid := uuid.UUID(a.id)) not in state]
    if not fresh:
        return 0
    interested = rules.count_yes(status for _, status in state.values())
    status = rules.new_match_status(interested, settings.match_max_interested)
    rows = await store.insert_matches(uow.conn, uuid.UUID(need.id), fresh, status)
    if rules.announced(status):
        await _emit_matches(uow, MatchFound, rows, need)
    return len(rows)


# --- queries: read on the pool, outside any unit of work (no state changes, no event) -----------------------


async def _needs_read(pool: asyncpg.Pool, rows: list[asyncpg.Record]) -> list[NeedRead]:
    """The needs of `rows` as the model, their owners read in one statement."""
    owners = {row["id"]: row for row in await store.owners_of(pool, list({r["owner_id"] for r in rows}))}
    return [store.need_read(row, owners.get(row["owner_id"])) for row in rows]


async def get_need(pool: asyncpg.Pool, need_id: str) -> NeedRead:
    need = await store.load_need(pool, parse_id(need_id, "need"))
    if need is None:
        raise NotFound(f"no need {need_id}")
    return need


async def needs_page(
    pool: asyncpg.Pool,
    *,
    owner_id: str | None,
    statuses: list[NeedStatus] | None,
    after: tuple[datetime, uuid.UUID] | None,
    first: int,
) -> tuple[list[NeedRead], bool]:
    """Needs newest first, after the (created_at, id) `after` when given; and whether more follow."""
    owner = parse_id(owner_id, "owner") if owner_id else None
    rows = await store.list_needs(
        pool, owner_id=owner, statuses=[s.value for s in statuses] if statuses else None, after=after, limit=first + 1
    )
    return await _needs_read(pool, rows[:first]), len(rows) > first


async def needs_by_ids(pool: asyncpg.Pool, wanted: list[uuid.UUID | None]) -> list[NeedRead | None]:
    """Needs in the order asked, None for an unknown (or unreadable) id."""
    rows = await store.get_needs(pool, [w for w in wanted if w is not None])
    found = {uuid.UUID(need.id): need for need in await _needs_read(pool, rows)}
    return [found.get(w) if w is not None else None for w in wanted]


async def need_matches(pool: asyncpg.Pool, principal: Principal, need_id: str) -> list[MatchRead]:
    """The actors matched to a need, best first (for its owner, partners and admins)."""
    row = await store.get_need(pool, parse_id(need_id, "need"))
    if row is None:
        raise NotFound(f"no need {need_id}")
    if not rules.can_read_need_matches(principal, str(row["owner_id"])):
        raise Forbidden(rules.NEED_MATCHES_ARE_PRIVATE)
    return [store.match_read(r) for r in await store.list_matches(pool, need_id=row["id"])]


async def actor_matches(pool: asyncpg.Pool, principal: Principal, actor_id: str) -> list[MatchRead]:
    """The needs an actor was matched to, best first (for the actor, partners and admins)."""
    aid = parse_id(actor_id, "actor")
    if not rules.can_read_actor_matches(principal, actor_id):
        raise Forbidden(rules.ACTOR_MATCHES_ARE_PRIVATE)
    return [store.match_read(r) for r in await store.list_matches(pool, actor_id=aid)]


async def needs_best_matches(
    pool: asyncpg.Pool,
    principal: Principal,
    asked: list[str],
    wanted: list[uuid.UUID | None],
    first: int,
    statuses: list[MatchStatus] | None = None,
) -> list[list[MatchRead] | MaillageError]:
    """Each asked need's `first` best matches (in `statuses`, when given), or the refusal `need_matches` would
    raise for it."""
    needs = {row["id"]: row for row in await store.get_needs(pool, [w for w in wanted if w is not None])}
    readable = [nid for nid, row in needs.items() if rules.can_read_need_matches(principal, str(row["owner_id"]))]
    found = await store.best_matches_of(pool, by="need_id", ids=readable, first=first, statuses=statuses)
    items: list[list[MatchRead] | MaillageError] = []
    for name, nid in zip(asked, wanted, strict=True):
        if nid is None or nid not in needs:
            items.append(NotFound(f"no need {name}"))
        elif nid not in found:
            items.append(Forbidden(rules.NEED_MATCHES_ARE_PRIVATE))
        else:
            items.append([store.match_read(r) for r in found[nid]])
    return items


async def actors_best_matches(
    pool: asyncpg.Pool,
    principal: Principal,
    asked: list[str],
    wanted: list[uuid.UUID | None],
    first: int,
    statuses: list[MatchStatus] | None = None,
) -> list[list[MatchRead] | MaillageError]:
    """Each asked actor's `first` best matches (in `statuses`, when given), or the refusal `actor_matches`
    would raise for it."""
    readable = [aid for aid in wanted if aid is not None and rules.can_read_actor_matches(principal, str(aid))]
    found = await store.best_matches_of(pool, by="actor_id", ids=readable, first=first, statuses=statuses)
    items: list[list[MatchRead] | MaillageError] = []
    for name, aid in zip(asked, wanted, strict=True):
        if aid is None:
            items.append(NotFound(f"no actor {name}"))
        elif aid not in found:
            items.append(Forbidden(rules.ACTOR_MATCHES_ARE_PRIVATE))
        else:
            items.append([store.match_read(r) for r in found[aid]])
    return items


async def needs_match_counts(
    pool: asyncpg.Pool,
    principal: Principal,
    asked: list[str],
    wanted: list[uuid.UUID | None],
    answered_since: datetime | None,
) -> list[MatchCounts | MaillageError]:
    """Each asked need's matches counted by status (and its answers after `answered_since`), or the refusal
    `need_matches` would raise for it: one statement for them all."""
    needs = {row["id"]: row for row in await store.get_needs(pool, [w for w in wanted if w is not None])}
    readable = [nid for nid, row in needs.items() if rules.can_read_need_matches(principal, str(row["owner_id"]))]
    counted = await store.match_counts(pool, readable, answered_since, [s.value for s in rules.RESPONSES])
    items: list[MatchCounts | MaillageError] = []
    for name, nid in zip(asked, wanted, strict=True):
        if nid is None or nid not in needs:
            items.append(NotFound(f"no need {name}"))
        elif nid not in counted:
            items.append(Forbidden(rules.NEED_MATCHES_ARE_PRIVATE))
        else:
            by_status, answered = counted[nid]
            items.append(
                MatchCounts(
                    total=sum(by_status.values()),
                    **{status.value: by_status.get(status.value, 0) for status in MatchStatus},
                    answered_since=answered if answered_since is not None else None,
                )
            )
    return items


async def get_match(pool: asyncpg.Pool, principal: Principal, match_id: str) -> MatchRead:
    """One match and why it was made (for its actor, the need's owner, partners and admins)."""
    row = await store.get_match(pool, parse_id(match_id, "match"))
    if row is None:
        raise NotFound(f"no match {match_id}")
    if not rules.can_read_match(principal, str(row["owner_id"]), str(row["actor_id"])):
        raise Forbidden(rules.MATCH_IS_PRIVATE)
    return store.match_read(row)


async def matches_by_ids(
    pool: asyncpg.Pool, principal: Principal, wanted: list[uuid.UUID | None]
) -> list[MatchRead | None]:
    """Matches in the order asked, None for an unknown id or one the caller may not read."""
    rows = await store.get_matches(pool, [w for w in wanted if w is not None])
    visible = {
        row["id"]: store.match_read(row)
        for row in rows
        if rules.can_read_match(principal, str(row["owner_id"]), str(row["actor_id"]))
    }
    return [visible.get(w) if w is not None else None for w in wanted]


# --- partners' webhook endpoints (no event: a partner's own configuration) ---------------------------------


async def _endpoint(pool: asyncpg.Pool | asyncpg.Connection, principal: Principal, webhook_id: str) -> asyncpg.Record:
    rules.require_partner(principal)
    row = await store.get_endpoint(pool, parse_id(webhook_id, "webhook"))
    if row is None or not rules.sees_endpoint(principal, row["owner"]):
        raise NotFound(f"no webhook {webhook_id}")
    return row


async def _check_url(url: str, settings: Settings) -> None:
    """Refuse a URL that resolves to an address webhooks never reach (early feedback; each delivery checks too)."""
    try:
        await webhooks.check_target(url, settings.webhook_allow_private)
    except webhooks.TargetRefused as exc:
        raise ValidationFailed(f"url: {exc}", field="url", rule="public_address") from exc


async def create_webhook(
    pool: asyncpg.Pool, principal: Principal, body: WebhookCreate, settings: Settings
) -> WebhookWithSecret:
    """Register an endpoint for the calling partner; its secret is answered this once."""
    rules.require_partner(principal)
    await _check_url(str(body.url), settings)  # before the unit of work: DNS holds no connection
    secret = webhooks.new_secret()
    async with unit_of_work(pool) as uow:
        row = await store.insert_endpoint(uow.conn, principal.subject, body, secret)
    return WebhookWithSecret(**store.webhook_read(row).model_dump(), secret=secret)


async def list_webhooks(pool: asyncpg.Pool, principal: Principal) -> list[WebhookRead]:
    rules.require_partner(principal)
    rows = await store.list_endpoints(pool, None if principal.is_admin else principal.subject)
    return [store.webhook_read(r) for r in rows]


async def get_webhook(pool: asyncpg.Pool, principal: Principal, webhook_id: str) -> WebhookRead:
    return store.webhook_read(await _endpoint(pool, principal, webhook_id))


async def update_webhook(
    pool: asyncpg.Pool, principal: Principal, webhook_id: str, body: WebhookUpdate, settings: Settings
) -> WebhookRead:
    """Change an endpoint's URL, event types, description, or pause and re-enable it."""
    row = await _endpoint(pool, principal, webhook_id)
    if body.url is not None:
        await _check_url(str(body.url), settings)
    async with unit_of_work(pool) as uow:
        updated = await store.update_endpoint(uow.conn, row["id"], body, rules.endpoint_status(body.enabled))
    return store.webhook_read(updated)


async def rotate_secret(pool: asyncpg.Pool, principal: Principal, webhook_id: str) -> WebhookWithSecret:
    """A new secret (answered this once); the previous one keeps signing beside it for `SECRET_OVERLAP`."""
    async with unit_of_work(pool) as uow:
        row = await _endpoint(uow.conn, principal, webhook_id)
        secret = webhooks.new_secret()
        updated = await store.rotate_endpoint_secret(uow.conn, row["id"], secret, webhooks.SECRET_OVERLAP)
    return WebhookWithSecret(**store.webhook_read(updated).model_dump(), secret=secret)


async def delete_webhook(pool: asyncpg.Pool, principal: Principal, webhook_id: str) -> None:
    """Delete an endpoint with its delivery log."""
    async with unit_of_work(pool) as uow:
        row = await _endpoint(uow.conn, principal, webhook_id)
        await store.delete_endpoint(uow.conn, row["id"])


async def list_deliveries(
    pool: asyncpg.Pool, principal: Principal, webhook_id: str, status: str | None, limit: int
) -> list[DeliveryRead]:
    row = await _endpoint(pool, principal, webhook_id)
    return [store.delivery_read(r) for r in await store.list_deliveries(pool, row["id"], status, limit)]


async def _delivery(pool: asyncpg.Pool | asyncpg.Connection, principal: Principal, delivery_id: str) -> asyncpg.Record:
    row = await store.get_delivery(pool, delivery_id)
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    await _endpoint(pool, principal, str(row["endpoint_id"]))
    return row


async def list_attempts(pool: asyncpg.Pool, principal: Principal, delivery_id: str) -> list[AttemptRead]:
    await _delivery(pool, principal, delivery_id)
    return [AttemptRead(**dict(r)) for r in await store.list_attempts(pool, delivery_id)]


async def retry_delivery(pool: asyncpg.Pool, principal: Principal, delivery_id: str) -> DeliveryRead:
    """Send a delivery again, now, with the same webhook-id."""
    async with unit_of_work(pool) as uow:
        await _delivery(uow.conn, principal, delivery_id)
        row = await store.retry_delivery(uow.conn, delivery_id, webhooks.CHANNEL)
    return store.delivery_read(row)
