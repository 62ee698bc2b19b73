"""Sending a service's `emails` table through SMTP: at least once, the same Message-ID on every retry, with backoff.

Each service writes its e-mails as rows in the transaction of the change they tell about; this
sender delivers them. Where the address comes from is the service's business (`address_of`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage

import aiosmtplib
import asyncpg
import httpx

from services.common.encoding import one_line, text_lines
from services.common.settings import Settings

logger = logging.getLogger("maillage.emails")
MAX_ATTEMPTS = 8

AddressOf = Callable[[asyncpg.Record], Awaitable[str | None]]


def message(settings: Settings, to: str, subject: str, body: str, message_id: str) -> EmailMessage:
    """The e-mail; raises ValueError when `to` is not one address.

    The default policy refuses a header with a line break and encodes the rest (RFC 2047): the subject is made one
    line first, so that a title can neither add a header nor stop the sender, and the recipient must parse as
    exactly the one address given.
    """
    if not to.isprintable():
        raise ValueError(f"not one e-mail address: {to!r}")
    mail = EmailMessage(policy=policy.default)
    mail["From"] = settings.smtp_sender
    mail["To"] = to
    addresses = mail["To"].addresses
    if len(addresses) != 1 or addresses[0].addr_spec != to:  # "a,b@c.fr" or "Name <other@c.fr>"
        raise ValueError(f"not one e-mail address: {to!r}")
    mail["Subject"] = one_line(subject)
    mail["Message-ID"] = f"<{message_id}@maillage>"
    mail.set_content(text_lines(body))
    return mail


async def deliver(settings: Settings, mail: EmailMessage, address: str) -> None:
    """Hand one message alone to the SMTP server, on a connection of its own (the batch sender keeps one session
    for many); aiosmtplib's errors, and OSError, when it does not take it."""
    await aiosmtplib.send(
        mail,
        recipients=[address],  # not whatever the headers would name
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username or None,
        password=settings.smtp_password or None,
        start_tls=settings.smtp_starttls,
        timeout=10,
    )


class _Session:
    """One SMTP session for a batch, opened on first use and again after a failure.

    A session carries many mail transactions (RFC 5321 §3.3): one connection and one EHLO, STARTTLS
    and login per batch rather than per e-mail, which is what keeps the sender ahead of a burst of
    matches. After any error the connection's state is unknown, so the next e-mail opens a new one.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: aiosmtplib.SMTP | None = None

    async def send(self, mail: EmailMessage, address: str) -> None:
        if self.client is None:
            s = self.settings
            client = aiosmtplib.SMTP(
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username or None,
                password=s.smtp_password or None,
                start_tls=s.smtp_starttls,
                timeout=10,
            )
            await client.connect()
            self.client = client
        try:
            await self.client.send_message(mail, recipients=[address])  # not whatever the headers would name
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await self.client.quit()
            self.abort()


async def send_due(pool: asyncpg.Pool, settings: Settings, address_of: AddressOf) -> int:
    """Send the e-mails that are due (a batch, over one SMTP session); a row without an address ends as `no_address`."""
    session = _Session(settings)
    try:
        return await _send_batch(pool, settings, address_of, session)
    finally:
        await session.close()


async def _send_batch(pool: asyncpg.Pool, settings: Settings, address_of: AddressOf, session: _Session) -> int:
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """SELECT * FROM emails WHERE status = 'pending' AND next_attempt_at <= now()
               ORDER BY next_attempt_at LIMIT 20 FOR UPDATE SKIP LOCKED"""
        )
        for row in rows:
            attempts = row["attempts"] + 1
            try:
                address = await address_of(row)
                if address is None:
                    await conn.execute(
                        "UPDATE emails SET status = 'no_address', attempts = $2 WHERE id = $1", row["id"], attempts
                    )
                    continue
                try:
                    mail = message(settings, address, row["subject"], row["body"], str(row["id"]))
                except ValueError as exc:  # retrying would not help: the address is no address
                    await conn.execute(
                        "UPDATE emails SET status = 'abandoned', attempts = $2, last_error = $3 WHERE id = $1",
                        row["id"],
                        attempts,
                        str(exc)[:500],
                    )
                    continue
                await session.send(mail, address)
                await conn.execute(
                    "UPDATE emails SET status = 'sent', to_address = $2, attempts = $3, sent_at = now() WHERE id = $1",
                    row["id"],
                    address,
                    attempts,
                )
            except (aiosmtplib.SMTPException, httpx.HTTPError, OSError) as exc:
                status = "pending" if attempts < MAX_ATTEMPTS else "abandoned"
                await conn.execute(
                    "UPDATE emails SET status = $2, attempts = $3, last_error = $4, next_attempt_at = $5 WHERE id = $1",
                    row["id"],
                    status,
                    attempts,
                    str(exc)[:500],
                    datetime.now(UTC) + timedelta(seconds=min(2**attempts, 3600)),
                )
        return len(rows)


async def run_sender(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event, address_of: AddressOf) -> None:
    while not stop.is_set():
        try:
            while await send_due(pool, settings, address_of):
                pass
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.warning("e-mail sender: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
