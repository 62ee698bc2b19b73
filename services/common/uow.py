"""Unit of work: one connection and one transaction for a use case, and the only place its events are born."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.common import outbox
from services.common.envelope import CloudEvent
from services.contracts.events import EventPayload


class UnitOfWork:
    """`async with UnitOfWork(pool, service="directory") as uow:` opens a transaction on `uow.conn`.

    It commits when the block ends normally and rolls back on any exception, so the state change
    and the events emitted through `uow.emit` are kept or dropped together (the outbox). The
    service name is bound once here rather than passed by every caller of `outbox.enqueue`.
    """

    def __init__(self, pool: asyncpg.Pool, *, service: str) -> None:
        self._pool = pool
        self.service = service
        self._conn: PoolConnectionProxy | None = None
        self._tx: asyncpg.transaction.Transaction | None = None
        self.events: list[CloudEvent] = []

    @property
    def conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("the unit of work is not open: use it in `async with`")
        return self._conn  # a pool proxy forwards every Connection method

    async def __aenter__(self) -> Self:
        self._conn = await self._pool.acquire()
        try:
            self._tx = self._conn.transaction()
            await self._tx.start()
        except BaseException:
            await self._pool.release(self._conn)
            self._conn = None
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._conn is not None and self._tx is not None
        try:
            if exc_type is None:
                await self._tx.commit()
            else:
                await self._tx.rollback()
        finally:
            await self._pool.release(self._conn)
            self._conn, self._tx = None, None

    async def emit(self, payload: EventPayload, *, key: str, subject: str | None = None) -> CloudEvent:
        """Record one event in the outbox, in this transaction (`subject`: what it is about, when it is said)."""
        event = await outbox.enqueue(self.conn, service=self.service, key=key, payload=payload, subject=subject)
        self.events.append(event)
        return event

    async def emit_many(
        self,
        events: Sequence[tuple[str, EventPayload | outbox.PreparedEvent]],
        *,
        fresh_keys: set[str] | frozenset[str] = frozenset(),
        subjects: Sequence[str] | None = None,
    ) -> list[CloudEvent]:
        """Record many (key, payload) events with one COPY (see `outbox.enqueue_many`)."""
        born = await outbox.enqueue_many(
            self.conn, service=self.service, events=events, fresh_keys=fresh_keys, subjects=subjects
        )
        self.events.extend(born)
        return born
