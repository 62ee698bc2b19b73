"""Idempotency keys of creating requests: a retry with the same key and body gets the first answer, not a second record.

A client whose creation timed out cannot know whether it committed. Sent again with the same `Idempotency-Key`,
the request answers what the first one answered (same status, body, `ETag` and `Location`, plus
`Idempotent-Replayed: true`); the same key with another request is a 409 (`rule: reused`). The key and the
answer are written in the creating transaction itself, so a creation that commits after its caller gave up is
found by the retry; concurrent requests with one key wait for each other (a transaction-scoped advisory lock),
so they create one record. Keys belong to one caller (role, subject, actor) and are kept
`MAILLAGE_IDEMPOTENCY_RETENTION_HOURS`; only successful creations are kept (a refusal is decided again).
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Annotated

import asyncpg
import orjson
from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from services.common.auth import CurrentPrincipal, Principal
from services.common.errors import Conflict, ValidationFailed
from services.common.settings import Settings

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Visible ASCII: a header value every client can send back unchanged; long enough for a UUID or a hash.
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,255}")
# The first half of the two-part advisory lock key (the second is the key's hash): a space of its own, apart
# from the single-number locks of migrations and outbox relays.
LOCK_CLASS = 0x1DE4


def key_problem(key: str) -> str | None:
    """Why `key` is not a usable idempotency key, or None."""
    if KEY_PATTERN.fullmatch(key) is None:
        return "an idempotency key is 1 to 255 visible ASCII characters (a UUID is a good one)"
    return None


class Idempotency:
    """One request's key: `claim` before creating (inside the transaction), `remember` the answer before commit."""

    def __init__(self, key: str | None, caller: Principal, request: str, retention: timedelta) -> None:
        self.key = key
        self.scope = f"{caller.role.value}|{caller.subject}|{caller.actor_id or ''}"
        self.request = request
        self.retention = retention
        self.fingerprint = ""

    async def claim(self, conn: asyncpg.Connection, body: BaseModel) -> JSONResponse | None:
        """The first answer to this key, or None when the request is new (the key is then locked until commit).

        Raises `Conflict` when the key was used for another request.
        """
        if self.key is None:
            return None
        self.fingerprint = hashlib.sha256(
            orjson.dumps({"request": self.request, "body": body.model_dump(mode="json")}, option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        # Held until this transaction ends: a concurrent request with the key waits, then finds the answer.
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_CLASS, f"{self.scope}\n{self.key}")
        first = await conn.fetchrow(
            """
            SELECT fingerprint, status_code, body, headers FROM idempotency_keys
            WHERE scope = $1 AND key = $2 AND created_at > now() - $3::interval
            """,
            self.scope,
            self.key,
            self.retention,
        )
        if first is None:
            return None
        if first["fingerprint"] != self.fingerprint:
            raise Conflict(
                f"{KEY_HEADER} {self.key} was already used for another request; use a new key for a new request",
                field=KEY_HEADER,
                rule="reused",
            )
        return JSONResponse(first["body"], first["status_code"], headers={**first["headers"], REPLAYED_HEADER: "true"})

    async def remember(self, conn: asyncpg.Connection, status: int, answer: BaseModel, headers: dict[str, str]) -> None:
        """Keep the answer to this key, in the creating transaction."""
        if self.key is None:
            return
        await conn.execute(
            """
            INSERT INTO idempotency_keys (scope, key, fingerprint, status_code, body, headers)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (scope, key) DO UPDATE  -- an expired key used again
            SET fingerprint = EXCLUDED.fingerprint, status_code = EXCLUDED.status_code, body = EXCLUDED.body,
                headers = EXCLUDED.headers, created_at = now()
            """,
            self.scope,
            self.key,
            self.fingerprint,
            status,
            answer.model_dump(mode="json", by_alias=True),
            headers,
        )


def idempotency(
    request: Request,
    principal: CurrentPrincipal,
    key: Annotated[
        str | None,
        Header(
            alias=KEY_HEADER,
            description="A key of yours for this creation: sent again with the same body, the request answers "
            "the first answer instead of creating again (kept MAILLAGE_IDEMPOTENCY_RETENTION_HOURS)",
        ),
    ] = None,
) -> Idempotency:
    if key is not None and (problem := key_problem(key)) is not None:
        raise ValidationFailed(f"{KEY_HEADER}: {problem}", field=KEY_HEADER, rule="format")
    settings: Settings = request.app.state.settings
    retention = timedelta(hours=settings.idempotency_retention_hours)
    return Idempotency(key, principal, f"{request.method} {request.url.path}", retention)


Idempotent = Annotated[Idempotency, Depends(idempotency)]


async def purge(conn: asyncpg.Connection, settings: Settings) -> int:
    """Forget the keys older than their retention."""
    status = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - $1::interval",
        timedelta(hours=settings.idempotency_retention_hours),
    )
    return int(status.split()[-1])
