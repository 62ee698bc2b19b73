"""The matching flow: match a need against the replica, an actor against open needs, and close needs."""

from __future__ import annotations

import logging
import uuid

import asyncpg

from services.common.outbox import enqueue, enqueue_many
from services.common.settings import Settings
from services.contracts.events import ActorV1, EventPayload, MatchFound, MatchWithdrawn, NeedClosed
from services.matching import store
from services.matching.model import MatchStatus, NeedRead
from services.matching.scoring import ActorProfile, Weights, evaluate

SERVICE = "matching"
CANDIDATE_FACTOR = 3  # SQL returns K times this many ranked candidates; Python keeps the exact top K

logger = logging.getLogger("maillage.matching")
Scored = tuple[ActorProfile, float, list[dict[str, object]]]


async def emit_match(conn: asyncpg.Connection, event: type[EventPayload], row: asyncpg.Record, need: NeedRead) -> None:
    match = store.match_read(row).to_contract(need.owner_id, need.title)
    # Keyed by need: one need's matches stay in order on one partition.
    await enqueue(conn, service=SERVICE, key=need.id, payload=event(match=match), subject=match.id)


async def load_need(conn: asyncpg.Connection, need_id: uuid.UUID, *, for_update: bool) -> NeedRead | None:
    row = await store.get_need(conn, need_id, for_update=for_update)
    if row is None:
        return None
    return store.need_read(row, await store.owner_of(conn, row["owner_id"]))


async def _store_matches(conn: asyncpg.Connection, need: NeedRead, scored: list[Scored], settings: Settings) -> int:
    """Store the matches an actor does not have yet (one statement) and publish those that are notified."""
    existing, interested = await store.match_state(conn, uuid.UUID(need.id))
    # Never notify an actor twice for one need.
    fresh = [(aid, score, reasons) for a, score, reasons in scored if (aid := uuid.UUID(a.id)) not in existing]
    if not fresh:
        return 0
    status = MatchStatus.notified if interested < settings.match_max_interested else MatchStatus.proposed
    rows = await store.insert_matches(conn, uuid.UUID(need.id), fresh, status.value)
    if status == MatchStatus.notified:
        matches = [store.match_read(row).to_contract(need.owner_id, need.title) for row in rows]
        # Keyed by need: one need's matches stay in order on one partition.
        await enqueue_many(
            conn,
            service=SERVICE,
            events=[(need.id, MatchFound(match=match)) for match in matches],
            subjects=[match.id for match in matches],
        )
    return len(rows)


async def match_need(conn: asyncpg.Connection, need_id: uuid.UUID, settings: Settings) -> int:
    """Store the need's top K matches above the minimum score; only new ones are notified."""
    need = await load_need(conn, need_id, for_update=True)
    if need is None or need.status != "published" or need.deadline <= store.now():
        return 0
    weights = Weights.from_settings(settings)
    profile = store.need_profile(need)
    found = await store.candidates(conn, need, weights, settings.match_k * CANDIDATE_FACTOR)
    scored = []
    for actor in found:
        result = evaluate(profile, actor, weights)
        if result.eligible and result.score >= settings.match_min_score:
            scored.append((actor, result.score, [r.as_dict() for r in result.reasons]))
    scored.sort(key=lambda item: (-item[1], item[0].id))
    return await _store_matches(conn, need, scored[: settings.match_k], settings)


async def apply_actor(conn: asyncpg.Connection, actor: ActorV1, settings: Settings) -> bool:
    """Keep a newer actor state in the replica and match it against open needs; False when not newer."""
    if not await store.upsert_actor(conn, actor):
        return False
    if actor.status == "active":
        await match_actor(conn, uuid.UUID(actor.id), settings)
    return True


async def match_actor(conn: asyncpg.Connection, actor_id: uuid.UUID, settings: Settings) -> int:
    """Match a new or changed actor against open needs: it joins a need's matches when it would rank in its top K."""
    row = await conn.fetchrow(
        "SELECT a.*, t.activities FROM actors a JOIN actor_texts t USING (id) WHERE a.id = $1 AND a.status = 'active'",
        actor_id,
    )
    if row is None:
        return 0
    weights = Weights.from_settings(settings)
    created = 0
    for need_row, text_rank in await store.open_needs_for(conn, actor_id):
        need = store.need_read(need_row, await store.owner_of(conn, need_row["owner_id"]))
        result = evaluate(store.need_profile(need), store.actor_profile(row, text_rank), weights)
        if not result.eligible or result.score < settings.match_min_score:
            continue
        await conn.execute("SELECT 1 FROM needs WHERE id = $1 FOR UPDATE", need_row["id"])
        scores = sorted((await store.match_state(conn, need_row["id"]))[0].values(), reverse=True)
        if len(scores) >= settings.match_k and result.score <= scores[settings.match_k - 1]:
            continue
        actor = store.actor_profile(row, text_rank)
        created += await _store_matches(
            conn, need, [(actor, result.score, [r.as_dict() for r in result.reasons])], settings
        )
    return created


async def close_need(conn: asyncpg.Connection, need_id: uuid.UUID, status: str, comment: str | None) -> NeedRead:
    """Close (or expire) a need: no new matches, pending ones withdrawn, each change published."""
    row = await store.set_need_status(conn, need_id, status, comment)
    need = store.need_read(row, await store.owner_of(conn, row["owner_id"]))
    await enqueue(conn, service=SERVICE, key=need.id, payload=NeedClosed(need=need.to_contract(), comment=comment))
    for match_row in await store.withdraw_pending(conn, need_id):
        await emit_match(conn, MatchWithdrawn, match_row, need)
    return need


async def expire_due(pool: asyncpg.Pool) -> int:
    """Expire the needs whose deadline has passed (the worker calls this periodically)."""
    async with pool.acquire() as conn, conn.transaction():
        due = await store.expired_needs(conn)
        for row in due:
            await close_need(conn, row["id"], "expired", None)
    if due:
        logger.info("expired %d needs", len(due))
    return len(due)
