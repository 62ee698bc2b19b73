"""The identities tests call with: forwarded ones for a service (which trusts nothing else), credentials for a gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import asyncpg

from gateway.auth import issue_credential
from services.common.auth import PRINCIPAL_HEADER, Principal, Role, mint_internal, mint_token
from services.common.settings import Settings

# A fixture keeps one admin identity for the whole session (and the fuzz tests run for minutes): signed for hours,
# where the gateway signs for a minute and re-signs.
SESSION_TTL_S = 6 * 3600


def default_subject(role: Role, actor_id: str | None) -> str:
    return f"{role.value}:{actor_id or uuid.uuid4().hex}"


def forwarded(
    settings: Settings,
    role: Role,
    actor_id: str | None = None,
    subject: str | None = None,
    scopes: Iterable[str] = (),
) -> dict[str, str]:
    """The headers of a call straight to a service for this caller, signed as the gateway forwards it."""
    principal = Principal(
        subject=subject or default_subject(role, actor_id), role=role, actor_id=actor_id, scopes=frozenset(scopes)
    )
    lasting = settings.model_copy(update={"internal_token_ttl_s": SESSION_TTL_S})
    return {PRINCIPAL_HEADER: mint_internal(lasting, principal)}


def credential_token(
    settings: Settings,
    role: Role,
    actor_id: str | None = None,
    subject: str | None = None,
    *,
    token_ttl: timedelta | None = None,
) -> str:
    """A bearer token recorded as a credential in the gateway's database (the gateway refuses any other).

    `token_ttl` signs a token of that credential expiring sooner than it (credentials last a minute at least).
    """

    async def issue() -> str:
        conn = await asyncpg.connect(settings.database_url_for("gateway"))
        try:
            row, token = await issue_credential(
                settings,
                conn,
                name=f"test {role.value}",
                role=role,
                issued_by="tests",
                actor_id=actor_id,
                subject=subject or default_subject(role, actor_id),
            )
        finally:
            await conn.close()
        if token_ttl is not None:
            return mint_token(
                settings, role=role, subject=row["subject"], actor_id=actor_id, ttl=token_ttl, token_id=str(row["id"])
            )
        return token

    # Called from tests whose loop is running: the insert runs on a loop of its own (PostgreSQL is another process).
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, issue()).result()
