"""Who calls the gateway: bearer tokens checked against revoked credentials, admins' credentials, rate limits."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from services.common.auth import ROLES_BOUND_TO_ACTOR, Principal, Role, mint_token, verify_token
from services.common.errors import Unauthenticated, ValidationFailed
from services.common.settings import Settings

CREDENTIAL_COLUMNS = """id, name, role, subject, actor_id, scopes, rate_limit_per_minute, issued_by, issued_at,
    expires_at, revoked_at, revoked_by"""
MAX_CREDENTIAL_TTL = timedelta(days=730)


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the principal and the rate it may call at."""

    principal: Principal
    rate_limit_per_minute: int | None = None


async def authenticate(settings: Settings, pool: asyncpg.Pool, authorization: str | None) -> Caller | None:
    """The caller of a request (None when it sent no credentials); raises `Unauthenticated` for a bad one.

    Every token is looked up by its jti: a revoked credential is refused on the next request, on every replica.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("unsupported Authorization header: send Authorization: Bearer <token>")
    principal = verify_token(settings, token)
    row = None
    if principal.token_id is not None:
        try:
            credential_id = uuid.UUID(principal.token_id)
        except ValueError:
            credential_id = None  # tokens minted by `maillage token` carry a hex jti and no credential
        if credential_id is not None:
            row = await pool.fetchrow(
                "SELECT revoked_at, rate_limit_per_minute FROM credentials WHERE id = $1", credential_id
            )
    if row is not None and row["revoked_at"] is not None:
        raise Unauthenticated("credential revoked")
    return Caller(principal, row["rate_limit_per_minute"] if row is not None else None)


# --- credentials --------------------------------------------------------------------------------------------


async def issue_credential(
    settings: Settings,
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    name: str,
    role: Role,
    issued_by: str,
    actor_id: str | None = None,
    scopes: list[str] | None = None,
    ttl: timedelta = timedelta(days=365),
    rate_limit_per_minute: int | None = None,
) -> tuple[dict[str, Any], str]:
    """Record a credential and mint its token (shown once; only its id is stored)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("name: 1 to 200 characters", field="name", rule="length")
    if role in ROLES_BOUND_TO_ACTOR and not actor_id:
        raise ValidationFailed(f"actorId: role {role.value!r} is bound to an actor", field="actorId", rule="required")
    if role not in ROLES_BOUND_TO_ACTOR and actor_id:
        raise ValidationFailed(f"actorId: role {role.value!r} is not bound to an actor", field="actorId", rule="absent")
    if not timedelta(minutes=1) <= ttl <= MAX_CREDENTIAL_TTL:
        raise ValidationFailed("ttl: between one minute and two years", field="ttlDays", rule="range")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise ValidationFailed("rateLimitPerMinute: at least 1", field="rateLimitPerMinute", rule="min")
    credential_id = uuid.uuid4()
    subject = f"{role.value}:{name.lower().replace(' ', '-')}:{credential_id.hex[:8]}"
    token = mint_token(
        settings,
        role=role,
        subject=subject,
        actor_id=actor_id,
        scopes=scopes or [],
        ttl=ttl,
        token_id=str(credential_id),
    )
    row = await pool.fetchrow(
        f"""INSERT INTO credentials (id, name, role, subject, actor_id, scopes, rate_limit_per_minute, issued_by,
                                     expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval) RETURNING {CREDENTIAL_COLUMNS}""",
        credential_id,
        name,
        role.value,
        subject,
        actor_id,
        scopes or [],
        rate_limit_per_minute,
        issued_by,
        ttl,
    )
    return dict(row), token


async def revoke_credential(
    pool: asyncpg.Pool | asyncpg.Connection, credential_id: uuid.UUID, *, revoked_by: str
) -> dict[str, Any] | None:
    """Revoke at once (idempotent: revoking again keeps the first date); None when there is no such credential."""
    row = await pool.fetchrow(
        f"""UPDATE credentials SET revoked_at = coalesce(revoked_at, now()), revoked_by = coalesce(revoked_by, $2)
            WHERE id = $1 RETURNING {CREDENTIAL_COLUMNS}""",
        credential_id,
        revoked_by,
    )
    return dict(row) if row is not None else None


async def list_credentials(pool: asyncpg.Pool | asyncpg.Connection, *, include_revoked: bool) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"""SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE $1 OR revoked_at IS NULL
            ORDER BY issued_at DESC, id""",
        include_revoked,
    )
    return [dict(row) for row in rows]


# --- rate limits --------------------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket per caller: `burst` requests at once, refilled at the per-minute rate (per replica)."""

    def __init__(self, per_minute: int, burst: int, *, max_callers: int = 100_000) -> None:
        self.per_minute = per_minute
        self.burst = burst
        self.max_callers = max_callers
        self.buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, caller: str, per_minute: int | None = None) -> float | None:
        """None when the request may go; else the seconds until it could."""
        rate = (per_minute or self.per_minute) / 60.0
        capacity = float(min(self.burst, per_minute or self.per_minute))
        now = time.monotonic()
        tokens, last = self.buckets.get(caller, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens < 1.0:
            self.buckets[caller] = (tokens, now)
            return math.ceil((1.0 - tokens) / rate * 10) / 10
        if len(self.buckets) >= self.max_callers and caller not in self.buckets:
            self.buckets.clear()  # a flood of anonymous addresses must not grow memory without bound
        self.buckets[caller] = (tokens - 1.0, now)
        return None


def rate_key(caller: Caller | None, client_address: str | None) -> str:
    if caller is None:
        return f"address:{client_address or 'unknown'}"
    return f"token:{caller.principal.token_id or caller.principal.subject}"
