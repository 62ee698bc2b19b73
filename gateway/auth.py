"""Who calls the gateway: bearer tokens checked against revoked credentials, admins' credentials, rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from gateway.outages import describe_outage
from services.common.auth import MAX_TOKEN_CHARS, ROLES_BOUND_TO_ACTOR, Principal, Role, mint_token, verify_token
from services.common.encoding import one_line
from services.common.errors import Unauthenticated, Unavailable, ValidationFailed
from services.common.settings import Settings

logger = logging.getLogger("maillage.gateway")

CREDENTIALS_CHANNEL = "maillage_credentials"  # migration 0002: a credential's id on each change
CREDENTIAL_COLUMNS = """id, name, role, subject, actor_id, scopes, rate_limit_per_minute, issued_by, issued_at,
    expires_at, revoked_at, revoked_by"""
MAX_CREDENTIAL_TTL = timedelta(days=730)
MAX_SCOPES = 50


@dataclass(frozen=True)
class Caller:
    """An authenticated request: the principal and the rate it may call at."""

    principal: Principal
    rate_limit_per_minute: int | None = None


async def authenticate(
    settings: Settings,
    pool: asyncpg.Pool,
    authorization: str | None,
    credentials: CredentialCache,
) -> Caller | None:
    """The caller of a request (None when it sent no credentials); raises `Unauthenticated` for a bad one.

    A token is accepted only as one of this gateway's credentials: its jti names a row, checked for revocation on
    every request, on every replica (`credentials` keeps the rows only while PostgreSQL tells it of every change).
    When that row cannot be read, `Unavailable` says why: nobody is let in unchecked.
    """
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("unsupported Authorization header: send Authorization: Bearer <token>")
    principal = verify_token(settings, token)
    credential_id = _credential_id(principal)
    state = credentials.get(credential_id)
    if state is None:
        generation = credentials.generation
        state = await _read_credential(settings, pool, credential_id)
        if state is None:
            raise Unauthenticated("token is not a credential of this gateway (unknown, or its record was deleted)")
        credentials.put(credential_id, state, generation)
    if state.revoked:
        raise Unauthenticated("credential revoked")
    return Caller(principal, state.rate_limit_per_minute)


def _credential_id(principal: Principal) -> uuid.UUID:
    if principal.token_id is None:
        raise Unauthenticated("token has no jti claim, so it names no credential and cannot be revoked")
    try:
        return uuid.UUID(principal.token_id)
    except ValueError:
        raise Unauthenticated(
            "token's jti names no credential: tokens come from `maillage credentials issue` or `maillage token`"
        ) from None


async def _read_credential(settings: Settings, pool: asyncpg.Pool, credential_id: uuid.UUID) -> CredentialState | None:
    try:
        async with asyncio.timeout(settings.gateway_credential_timeout_s):
            row = await pool.fetchrow(
                "SELECT revoked_at IS NOT NULL AS revoked, rate_limit_per_minute FROM credentials WHERE id = $1",
                credential_id,
            )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        outage = describe_outage(exc)
        logger.warning(
            "credential %s not checked, the gateway's database failed: %s (%r)", credential_id, outage.reason, exc
        )
        raise Unavailable(
            f"credentials cannot be checked: the gateway's database is unavailable ({outage.reason}); try again"
        ) from None
    return None if row is None else CredentialState(row["revoked"], row["rate_limit_per_minute"])


@dataclass(frozen=True)
class CredentialState:
    revoked: bool
    rate_limit_per_minute: int | None


class CredentialCache:
    """What the replica knows of the credentials it saw, kept only while it hears of every change.

    A connection LISTENs on `CREDENTIALS_CHANNEL` (a trigger notifies each change when it commits). While it is
    down, or has not answered a check for two check periods, nothing is served from here and every request reads
    its row. A row read while a change arrives is not kept (`generation`), and no entry is older than `ttl_s`.
    """

    def __init__(self, ttl_s: float = 10.0, max_entries: int = 100_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.entries: dict[uuid.UUID, tuple[CredentialState, float]] = {}
        self.generation = 0  # bumped by every change heard, and when hearing stops
        self.heard_until = 0.0  # the listening connection answered recently up to this monotonic time
        # Told of each change heard, after it is applied (None: any credential may have changed).
        self.listeners: list[Callable[[uuid.UUID | None], None]] = []

    def get(self, credential_id: uuid.UUID) -> CredentialState | None:
        now = time.monotonic()
        entry = self.entries.get(credential_id)
        if entry is None or now > self.heard_until or now > entry[1]:
            return None
        return entry[0]

    def put(self, credential_id: uuid.UUID, state: CredentialState, generation: int) -> None:
        if generation != self.generation or time.monotonic() > self.heard_until:
            return  # a change may have been heard since the row was read
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[credential_id] = (state, time.monotonic() + self.ttl_s)

    def forget(self, credential_id: uuid.UUID | None = None) -> None:
        """Drop one credential (None: all of them)."""
        self.generation += 1
        if credential_id is None:
            self.entries.clear()
        else:
            self.entries.pop(credential_id, None)

    def _heard(self, connection: object, pid: int, channel: str, payload: str) -> None:
        credential_id: uuid.UUID | None
        try:
            credential_id = uuid.UUID(payload)
        except ValueError:
            credential_id = None
        self.forget(credential_id)
        for listener in self.listeners:
            listener(credential_id)

    async def watch(self, database_url: str, stop: asyncio.Event, check_every_s: float = 2.0) -> None:
        """Listen for changes until `stop`, reconnecting; the connection is checked every `check_every_s`."""
        backoff = 0.5
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(database_url, timeout=5)
                await conn.add_listener(CREDENTIALS_CHANNEL, self._heard)
                backoff = 0.5
                while not stop.is_set():
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout=check_every_s)
                    # Served from memory only until the next check is due: a silent connection ends it.
                    self.heard_until = time.monotonic() + check_every_s * 2
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), check_every_s)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("credential changes unheard, reading every credential: %s", exc)
            except Exception:
                logger.exception("credential watch failed, restarting")
            finally:
                self.heard_until = 0.0
                self.forget()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 10.0)


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
    subject: str | None = None,
) -> tuple[dict[str, Any], str]:
    """Record a credential and mint its token (shown once; only its id is stored); the subject defaults to one
    made of the role, the name and the id."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationFailed("name: 1 to 200 characters", field="name", rule="length")
    if one_line(name) != name:
        raise ValidationFailed("name: one line of printable characters", field="name", rule="text")
    if len(scopes or []) > MAX_SCOPES or any(not 1 <= len(s) <= 100 or one_line(s) != s for s in scopes or []):
        raise ValidationFailed(
            f"scopes: at most {MAX_SCOPES}, each 1 to 100 printable characters", field="scopes", rule="format"
        )
    if role in ROLES_BOUND_TO_ACTOR and not actor_id:
        raise ValidationFailed(f"actorId: role {role.value!r} is bound to an actor", field="actorId", rule="required")
    if role not in ROLES_BOUND_TO_ACTOR and actor_id:
        raise ValidationFailed(f"actorId: role {role.value!r} is not bound to an actor", field="actorId", rule="absent")
    if not timedelta(minutes=1) <= ttl <= MAX_CREDENTIAL_TTL:
        raise ValidationFailed("ttl: between one minute and two years", field="ttlDays", rule="range")
    if rate_limit_per_minute is not None and rate_limit_per_minute < 1:
        raise ValidationFailed("rateLimitPerMinute: at least 1", field="rateLimitPerMinute", rule="min")
    if subject is not None and not 0 < len(subject.strip()) <= 200:
        raise ValidationFailed("subject: 1 to 200 characters", field="subject", rule="length")
    credential_id = uuid.uuid4()
    subject = subject.strip() if subject else f"{role.value}:{name.lower().replace(' ', '-')}:{credential_id.hex[:8]}"
    token = mint_token(
        settings,
        role=role,
        subject=subject,
        actor_id=actor_id,
        scopes=scopes or [],
        ttl=ttl,
        token_id=str(credential_id),
    )
    if len(token) > MAX_TOKEN_CHARS:  # verify_token would refuse it
        raise ValidationFailed(
            f"scopes: the token would be over {MAX_TOKEN_CHARS} characters", field="scopes", rule="length"
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
