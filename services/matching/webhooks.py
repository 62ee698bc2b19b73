"""Partner webhooks: fan-out of public events to endpoints, signed at-least-once delivery with retries.

Deliveries follow the Standard Webhooks spec: `webhook-id` (stable per endpoint and event, so
receivers dedupe on it), `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`.
5xx, timeouts and connection errors are retried with exponential backoff; other 4xx are not; 410
disables the endpoint; redirects are not followed. Targets resolving to private or loopback addresses are
refused unless `MAILLAGE_WEBHOOK_ALLOW_PRIVATE` is set, link-local and cloud metadata addresses always; each
connection goes to the address that was checked (services/matching/egress.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpcore
import httpx
import orjson
from standardwebhooks import Webhook

from services.common.envelope import CloudEvent
from services.common.settings import Settings
from services.matching.egress import PinnedNetwork, checked_addresses, pinned_client, system_resolve
from services.matching.egress import TargetRefused as TargetRefused  # re-exported: the use cases refuse with it
from services.matching.model import public_type

logger = logging.getLogger("maillage.webhooks")
CHANNEL = "maillage_deliveries"
DELIVERY_NAMESPACE = uuid.UUID("5b0e4c1e-8f55-4f0a-9d8e-6a3a2d7c1f10")
BATCH = 20


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def delivery_id(endpoint_id: uuid.UUID, event_id: str) -> str:
    """The webhook-id of one event for one endpoint: the same on every attempt and every redelivery."""
    return f"msg_{uuid.uuid5(DELIVERY_NAMESPACE, f'{endpoint_id}:{event_id}').hex}"


def payload_of(event: CloudEvent) -> dict[str, Any]:
    return {
        "type": public_type(event.type),
        "id": event.id,
        "timestamp": event.time.isoformat() if isinstance(event.time, datetime) else str(event.time),
        "data": event.data,
    }


async def fan_out(conn: asyncpg.Connection, event: CloudEvent) -> int:
    """One delivery per active endpoint subscribed to the event's type (idempotent)."""
    kind = public_type(event.type)
    endpoints = await conn.fetch(
        "SELECT id FROM webhook_endpoints WHERE status = 'active' AND event_types @> ARRAY[$1::text]", kind
    )
    if not endpoints:
        return 0
    payload = payload_of(event)
    await conn.executemany(
        """
        INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload)
        VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING
        """,
        [(delivery_id(e["id"], event.id), e["id"], event.id, kind, payload) for e in endpoints],
    )
    return len(endpoints)


async def check_target(url: str, allow_private: bool) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to an address `egress.refusal` refuses.

    Early feedback when an endpoint is registered; each delivery checks again, in its connection.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused(f"{url}: not an http(s) URL")
    try:
        await checked_addresses(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            allow_private=allow_private,
            resolve=system_resolve,
        )
    except httpcore.ConnectError as exc:
        raise TargetRefused(str(exc)) from exc


def delivery_client(settings: Settings) -> httpx.AsyncClient:
    return pinned_client(PinnedNetwork(allow_private=settings.webhook_allow_private))


@dataclass
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        if self.status_code is None:
            return self.error is not None and not self.error.startswith("refused")
        return self.status_code >= 500 or self.status_code in (408, 429)


# How long a rotated secret keeps signing beside the new one.
SECRET_OVERLAP = timedelta(hours=24)


def sign(keys: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """The `webhook-signature` header: one `v1,…` signature per valid secret, space-separated."""
    return " ".join(Webhook(key).sign(msg_id, timestamp, body) for key in keys)


async def post(
    client: httpx.AsyncClient, settings: Settings, url: str, keys: list[str], msg_id: str, payload: Any
) -> Outcome:
    started = time.perf_counter()
    if urlsplit(url).scheme not in ("http", "https"):
        return Outcome(None, f"refused: {url}: not an http(s) URL", 0.0)
    body = orjson.dumps(payload).decode()
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sign(keys, msg_id, now, body),
        "user-agent": "Maillage-Webhooks/1",
    }
    try:
        response = await client.post(url, content=body, headers=headers, timeout=settings.webhook_timeout_s)
        return Outcome(response.status_code, None, (time.perf_counter() - started) * 1000)
    except TargetRefused as exc:  # raised by the client's connection, which checks the address it connects to
        return Outcome(None, f"refused: {exc}", (time.perf_counter() - started) * 1000)
    except httpx.TimeoutException:
        return Outcome(None, "timeout", (time.perf_counter() - started) * 1000)
    except httpx.HTTPError as exc:
        return Outcome(None, f"connection error: {exc.__class__.__name__}", (time.perf_counter() - started) * 1000)


def backoff(settings: Settings, attempts: int) -> timedelta:
    delay = settings.webhook_retry_base_s * (2 ** (attempts - 1))
    return timedelta(seconds=min(delay, 3600) * random.uniform(0.8, 1.2))


async def deliver_due(pool: asyncpg.Pool, client: httpx.AsyncClient, settings: Settings) -> int:
    """Send the deliveries that are due; each attempt is recorded. Returns how many were tried."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """
            SELECT d.id, d.payload, d.attempts, e.id AS endpoint_id, e.url,
                   array_remove(ARRAY[e.secret, CASE WHEN e.previous_secret_expires_at > now()
                                                     THEN e.previous_secret END], NULL) AS secrets
            FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
            WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND e.status = 'active'
            ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED
            """,
            BATCH,
        )
        if not rows:
            return 0
        outcomes = await asyncio.gather(
            *(post(client, settings, r["url"], r["secrets"], r["id"], r["payload"]) for r in rows)
        )
        for row, outcome in zip(rows, outcomes, strict=True):
            attempts = row["attempts"] + 1
            await conn.execute(
                """INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error, duration_ms)
                   VALUES ($1, $2, $3, $4, $5)""",
                row["id"],
                attempts,
                outcome.status_code,
                outcome.error,
                outcome.duration_ms,
            )
            error = outcome.error or (f"HTTP {outcome.status_code}" if not outcome.delivered else None)
            if outcome.delivered:
                status, next_at = "delivered", None
            elif outcome.retryable and attempts < settings.webhook_max_attempts:
                status, next_at = "pending", datetime.now(UTC) + backoff(settings, attempts)
            else:
                status, next_at = ("failed" if not outcome.retryable else "abandoned"), None
            await conn.execute(
                """
                UPDATE webhook_deliveries
                SET status = $2, attempts = $3, next_attempt_at = coalesce($4, next_attempt_at),
                    last_error = $5, delivered_at = CASE WHEN $2 = 'delivered' THEN now() END
                WHERE id = $1
                """,
                row["id"],
                status,
                attempts,
                next_at,
                error,
            )
            if outcome.status_code == 410:
                await conn.execute(
                    """UPDATE webhook_endpoints
                       SET status = 'disabled', disabled_reason = 'the receiver answered 410 Gone', updated_at = now()
                       WHERE id = $1""",
                    row["endpoint_id"],
                )
        return len(rows)


async def run_deliverer(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event, database_url: str) -> None:
    """Deliver as soon as a delivery is inserted (LISTEN), and on a 1 s poll for retries."""
    wake = asyncio.Event()
    listener: asyncpg.Connection | None = None
    async with delivery_client(settings) as client:
        while not stop.is_set():
            try:
                if listener is None or listener.is_closed():
                    listener = await asyncpg.connect(database_url)
                    await listener.add_listener(CHANNEL, lambda *_: wake.set())
                while await deliver_due(pool, client, settings):
                    pass
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("webhook deliverer: %s", exc)
                listener = None
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, wake), 1.0)
    if listener is not None:
        with contextlib.suppress(Exception):
            await listener.close()


async def _first(*events: asyncio.Event) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
