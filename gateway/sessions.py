"""Signing people in without a password: one-time links by e-mail, and console sessions that are credentials.

A link's token is shown once (in the e-mail) and stored only as its SHA-256; it is valid 15 minutes and used once,
by the POST of the page it opens (a mail scanner fetching the link consumes nothing). Asking for a link answers the
same whether the address is known or not: the lookup and the e-mail happen after the answer (`send_link`), and the
per-address and per-client limits count every request. The address is looked up in the directory (its persons and
memberships) at send time and again at sign-in, with the gateway's own service identity; none is kept here but in
a link's row (purged a day after).

A session is a row of `credentials` (so revoking it refuses it on every replica) bound to the actor of one of the
person's memberships: the `collectivity` role for a local authority, `actor` otherwise, subject `person:<id>`; its
absolute lifetime is the credential's expiry, its idle lifetime `console_sessions.last_seen_at`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import aiosmtplib
import asyncpg
from graphql import GraphQLError

from gateway.auth import issue_credential, revoke_credential
from gateway.clients import ServiceClients
from services.common import mail
from services.common.auth import Role
from services.common.settings import Settings
from services.contracts.errors import ErrorCode

logger = logging.getLogger("maillage.gateway.sign-in")

LINK_TTL = timedelta(minutes=15)
LINK_PATH = "/connexion/lien"
PERSON_SUBJECT = "person:"
LOCAL_AUTHORITY = "local_authority"
REQUEST_WINDOW = timedelta(hours=1)
KEPT_FOR = timedelta(days=1)  # links and requests (an address, a hash of one) are deleted after this
SEEN_EVERY_S = 60.0  # a session's last use is written at most this often


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def address_key(settings: Settings, email: str) -> bytes:
    """The address as the rate limit counts it: keyed, so that the table holds no address nobody owns."""
    return hmac.new(settings.internal_key.encode(), f"sign-in:{email.strip().lower()}".encode(), "sha256").digest()


def safe_next(path: str | None) -> str | None:
    """A path of this site to go back to after signing in (never another site's: `//host`, `/\\host`)."""
    if not path or not path.startswith("/") or path.startswith(("//", "/\\")) or len(path) > 500:
        return None
    return path if path.isprintable() else None


def role_for(kind: str) -> Role:
    """A member of a local authority acts with the `collectivity` role for it; of another actor, `actor`."""
    return Role.COLLECTIVITY if kind == LOCAL_AUTHORITY else Role.ACTOR


def person_of_subject(subject: str) -> str | None:
    return subject.removeprefix(PERSON_SUBJECT) if subject.startswith(PERSON_SUBJECT) else None


# --- asking for a link ----------------------------------------------------------------------------------


async def over_limit(settings: Settings, pool: asyncpg.Pool, email: str, client: str | None) -> bool:
    """Count this request; whether the address or the client asked for more links than allowed this hour."""
    key = address_key(settings, email)
    async with pool.acquire() as conn, conn.transaction():
        # One request of an address at a time, so that concurrent ones cannot all pass the count.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key.hex())
        await conn.execute("DELETE FROM sign_in_requests WHERE requested_at < now() - $1::interval", KEPT_FOR)
        await conn.execute("DELETE FROM sign_in_links WHERE created_at < now() - $1::interval", KEPT_FOR)
        by_address, by_client = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE address_hash = $1),
                      count(*) FILTER (WHERE requested_from IS NOT DISTINCT FROM $2)
               FROM sign_in_requests
               WHERE requested_at > now() - $3::interval AND (address_hash = $1 OR requested_from = $2)""",
            key,
            client,
            REQUEST_WINDOW,
        )
        if by_address >= settings.console_sign_in_per_address_per_hour:
            return True
        if by_client >= settings.console_sign_in_per_ip_per_hour:
            return True
        await conn.execute("INSERT INTO sign_in_requests (address_hash, requested_from) VALUES ($1, $2)", key, client)
    return False


@dataclass(frozen=True)
class Mail:
    subject: str
    body: str


def sign_in_mail(name: str | None, url: str, *, invited_to: str | None = None) -> Mail:
    greeting = f"Bonjour {name}," if name else "Bonjour,"
    if invited_to:
        intro = f"Vous êtes invité à agir pour « {invited_to} » sur Maillage. Pour vous connecter la première fois,"
        subject = f"Invitation à rejoindre {invited_to} sur Maillage"
    else:
        intro = "Vous avez demandé à vous connecter à Maillage. Pour vous connecter,"
        subject = "Votre lien de connexion à Maillage"
    body = (
        f"{greeting}\n\n{intro} ouvrez ce lien puis appuyez sur « Me connecter » :\n\n{url}\n\n"
        "Le lien est valable 15 minutes et ne sert qu'une fois. Si vous n'avez rien demandé, ignorez ce message : "
        "personne ne peut se connecter sans ce lien.\n\n— Maillage\n"
    )
    return Mail(subject, body)


async def create_link(
    settings: Settings,
    pool: asyncpg.Pool | asyncpg.Connection,
    email: str,
    *,
    person_id: str | None,
    claim_ids: list[str],
    requested_from: str | None,
    next_path: str | None = None,
    purpose: str = "sign-in",
) -> str:
    """Record a link and answer its URL (the token is in it, and nowhere else)."""
    token = secrets.token_urlsafe(32)
    await pool.execute(
        """INSERT INTO sign_in_links (id, token_hash, email, person_id, claim_ids, purpose, next_path,
                                      requested_from, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval)""",
        uuid.uuid4(),
        token_hash(token),
        email,
        uuid.UUID(person_id) if person_id else None,
        [uuid.UUID(c) for c in claim_ids],
        purpose,
        safe_next(next_path),
        requested_from,
        LINK_TTL,
    )
    return f"{settings.public_url.rstrip('/')}{LINK_PATH}?{urlencode({'jeton': token})}"


async def send_link(
    settings: Settings,
    pool: asyncpg.Pool,
    clients: ServiceClients,
    email: str,
    *,
    requested_from: str | None,
    next_path: str | None = None,
) -> bool:
    """Send a sign-in link to an address that is a person's, or the registered contact of an actor it may claim;
    nothing to any other (whether it was sent is for the logs and tests: the person is told the same)."""
    found = await clients.directory.lookup_person(email)
    person = found.get("person")
    # The address may also be the contact of actors it is no member of yet: those it may claim are claimed.
    claims = await clients.directory.claim_actors(email)
    if not found.get("memberships") and not claims:
        return False
    url = await create_link(
        settings,
        pool,
        email,
        person_id=person["id"] if person else None,
        claim_ids=[c["id"] for c in claims],
        requested_from=requested_from,
        next_path=next_path,
    )
    letter = sign_in_mail(person["name"] if person else None, url)
    await deliver(settings, email, letter, url)
    return True


async def deliver(settings: Settings, to: str, letter: Mail, url: str) -> None:
    """Send the e-mail now; with e-mail turned off (MAILLAGE_EMAIL_ENABLED=false, the embedded stack without a mail
    server), the link is logged instead, or nobody could sign in."""
    if not settings.email_enabled:
        logger.warning("e-mail is off: the sign-in link for %s is %s", to, url)
        return
    message = mail.message(settings, to, letter.subject, letter.body, uuid.uuid4().hex)
    await mail.deliver(settings, message, to)


async def invite(
    settings: Settings,
    pool: asyncpg.Pool | asyncpg.Connection,
    *,
    email: str,
    person: dict[str, Any],
    actor_name: str,
) -> str:
    """The first sign-in link of an invited person, sent by e-mail (answered too, for the operator)."""
    url = await create_link(
        settings, pool, email, person_id=person["id"], claim_ids=[], requested_from=None, purpose="invitation"
    )
    await deliver(settings, email, sign_in_mail(person["name"], url, invited_to=actor_name), url)
    return url


async def send_link_quietly(
    settings: Settings, pool: asyncpg.Pool, clients: ServiceClients, email: str, **options: Any
) -> None:
    """`send_link` after the answer was given: its failures are logged, never shown (nor timed) to the asker."""
    try:
        await send_link(settings, pool, clients, email, **options)
    except (GraphQLError, aiosmtplib.SMTPException, OSError, asyncpg.PostgresError, ValueError) as exc:
        logger.warning("sign-in link not sent: %s", exc)


# --- using a link ---------------------------------------------------------------------------------------


async def link_is_usable(pool: asyncpg.Pool, token: str) -> bool:
    """Whether the link can still sign in (read only: showing its page changes nothing)."""
    usable = await pool.fetchval(
        "SELECT used_at IS NULL AND expires_at > now() FROM sign_in_links WHERE token_hash = $1", token_hash(token)
    )
    return bool(usable)


async def peek_link(pool: asyncpg.Pool, token: str) -> asyncpg.Record | None:
    """The row of a link that can still sign in (not marked used: `use_link` does, once)."""
    row: asyncpg.Record | None = await pool.fetchrow(
        """SELECT email, person_id, claim_ids, next_path FROM sign_in_links
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()""",
        token_hash(token),
    )
    return row


async def use_link(pool: asyncpg.Pool, token: str) -> asyncpg.Record | None:
    """Mark the link used, once: its row, or None when it is unknown, used or expired."""
    row: asyncpg.Record | None = await pool.fetchrow(
        """UPDATE sign_in_links SET used_at = now()
           WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
           RETURNING email, person_id, claim_ids, next_path""",
        token_hash(token),
    )
    return row


async def memberships_after_sign_in(clients: ServiceClients, link: asyncpg.Record) -> dict[str, Any]:
    """The claims of the link confirmed (the address proved itself), then the person and memberships as they are
    now: a membership removed since the link was sent is not signed in to."""
    for claim_id in link["claim_ids"]:
        try:
            await clients.directory.confirm_claim(str(claim_id))
        except GraphQLError as exc:  # voided since (the actor's contact changed): the other claims still count
            if (exc.extensions or {}).get("code") not in (ErrorCode.CONFLICT, ErrorCode.NOT_FOUND):
                raise
    found: dict[str, Any] = await clients.directory.lookup_person(link["email"])
    return found


# --- sessions -------------------------------------------------------------------------------------------


async def open_session(
    settings: Settings, pool: asyncpg.Pool, person: dict[str, Any], membership: dict[str, Any]
) -> tuple[str, int]:
    """A new session for the person acting for the membership's actor: its token and lifetime in seconds."""
    actor = membership["actor"]
    lifetime = settings.console_session_absolute_s
    async with pool.acquire() as conn, conn.transaction():
        row, token = await issue_credential(
            settings,
            conn,
            name="Session de la console",
            role=role_for(actor["kind"]),
            actor_id=actor["id"],
            issued_by="console:sign-in",
            ttl=timedelta(seconds=lifetime),
            subject=f"{PERSON_SUBJECT}{person['id']}",
        )
        await conn.execute(
            "INSERT INTO console_sessions (credential_id, person_id) VALUES ($1, $2)",
            row["id"],
            uuid.UUID(person["id"]),
        )
    return token, lifetime


async def end_session(pool: asyncpg.Pool, credential_id: uuid.UUID, why: str) -> None:
    await revoke_credential(pool, credential_id, revoked_by=why)


async def end_sessions_of(pool: asyncpg.Pool, person_id: str, actor_id: str, why: str) -> list[uuid.UUID]:
    """Revoke a person's open sessions for an actor (it is no longer a member): the ids revoked."""
    rows = await pool.fetch(
        """UPDATE credentials SET revoked_at = now(), revoked_by = $3
           WHERE subject = $1 AND actor_id = $2 AND revoked_at IS NULL RETURNING id""",
        f"{PERSON_SUBJECT}{person_id}",
        actor_id,
        why,
    )
    return [row["id"] for row in rows]


class IdleSessions:
    """Sessions' idle lifetime: the last use is written at most once a minute per session and replica, and a
    session unused for `console_session_idle_s` is revoked when it comes back."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.seen: dict[uuid.UUID, float] = {}
        self.max_entries = max_entries

    async def still_active(self, settings: Settings, pool: asyncpg.Pool, credential_id: uuid.UUID) -> bool:
        now = time.monotonic()
        if now - self.seen.get(credential_id, -SEEN_EVERY_S) < SEEN_EVERY_S:
            return True  # used less than a minute ago here: not idle (the idle lifetime is at least a minute)
        fresh = await pool.fetchval(
            """UPDATE console_sessions SET last_seen_at = now()
               WHERE credential_id = $1 AND last_seen_at > now() - make_interval(secs => $2)
               RETURNING true""",
            credential_id,
            float(settings.console_session_idle_s),
        )
        if fresh is None:
            known = await pool.fetchval("SELECT 1 FROM console_sessions WHERE credential_id = $1", credential_id)
            if known is not None:  # idle too long: ended for good, on every replica
                self.seen.pop(credential_id, None)
                await end_session(pool, credential_id, "idle")
                return False
            # A person's credential issued otherwise (`maillage credentials issue`): only its expiry bounds it.
        if len(self.seen) >= self.max_entries:
            self.seen.clear()
        self.seen[credential_id] = now
        return True
