"""E-mails in French to persons who register: written with the change they tell about, sent at least once.

Each one carries a link that cancels the registration without an account: the link's token is an
HMAC of the registration id under a key derived from the internal key, so nothing secret is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from zoneinfo import ZoneInfo

import asyncpg

from services.common import mail
from services.common.encoding import one_line
from services.common.settings import Settings
from services.events.model import ParticipantKind, RegistrationChange

EMAIL_NAMESPACE = uuid.UUID("5d0e1c1e-7d0b-4a7e-9f39-2b0c4ad7e3a4")

# What happened to the registration → (subject, first paragraph).
MESSAGES: dict[str, tuple[str, str]] = {  # keyed by RegistrationChange (a str)
    RegistrationChange.confirmed: ("Inscription confirmée : {title}", "Votre inscription à « {title} » est confirmée."),
    RegistrationChange.waitlisted: (
        "Liste d'attente : {title}",
        "L'événement « {title} » est complet : vous êtes sur la liste d'attente (position {position}). "
        "Nous vous écrirons si une place se libère.",
    ),
    RegistrationChange.promoted: (
        "Une place s'est libérée : {title}",
        "Une place s'est libérée pour « {title} » : votre inscription est maintenant confirmée.",
    ),
    RegistrationChange.pending: (
        "Demande d'inscription reçue : {title}",
        "Votre demande d'inscription à « {title} » est bien reçue ; les organisateurs vont l'examiner.",
    ),
    RegistrationChange.rejected: (
        "Inscription non retenue : {title}",
        "Les organisateurs de « {title} » n'ont pas pu retenir votre inscription.",
    ),
    RegistrationChange.cancelled: ("Inscription annulée : {title}", "Votre inscription à « {title} » est annulée."),
    RegistrationChange.event_cancelled: (
        "Événement annulé : {title}",
        "L'événement « {title} » est annulé par ses organisateurs ; votre inscription l'est donc aussi.",
    ),
}
LIVE = (  # the changes after which the registration can still be cancelled: their e-mails carry the link
    RegistrationChange.confirmed,
    RegistrationChange.waitlisted,
    RegistrationChange.promoted,
    RegistrationChange.pending,
)


def _key(settings: Settings) -> bytes:
    return hmac.new(settings.internal_key.encode(), b"maillage/registration-cancel", hashlib.sha256).digest()


def cancel_token(settings: Settings, registration_id: uuid.UUID | str) -> str:
    return hmac.new(_key(settings), str(registration_id).encode(), hashlib.sha256).hexdigest()[:32]


def check_cancel_token(settings: Settings, registration_id: uuid.UUID | str, token: str) -> bool:
    return hmac.compare_digest(cancel_token(settings, registration_id), token)


def cancel_link(settings: Settings, registration_id: uuid.UUID | str) -> str:
    """The link on the gateway; links sent before it served them had this path on the events service's host."""
    token = cancel_token(settings, registration_id)
    return settings.public_link(f"/v1/registrations/{registration_id}/cancel?token={token}")


def compose(
    what: str, event: asyncpg.Record, registration_id: uuid.UUID, settings: Settings, *, position: int | None = None
) -> tuple[str, str]:
    """(subject, body) of the e-mail telling a person what happened to their registration."""
    subject, opening = MESSAGES[what]
    title = one_line(event["title"])  # a line break in it must not start a paragraph of its own in the e-mail
    zone = ZoneInfo(event["timezone"])
    starts = event["starts_at"].astimezone(zone)
    where = one_line(", ".join(part for part in (event["address"], event["online_url"]) if part)) or "lieu à préciser"
    lines = [
        "Bonjour,",
        "",
        opening.format(title=title, position=position or "?"),
        "",
        f"Quand : le {starts:%d/%m/%Y à %H:%M} ({event['timezone']})",
        f"Où : {where}",
    ]
    if what in LIVE:
        lines += ["", f"Vous ne pourrez pas venir ? Annulez en un clic : {cancel_link(settings, registration_id)}"]
    lines += ["", "-- Maillage"]
    return subject.format(title=title), "\n".join(lines)


async def record(
    conn: asyncpg.Connection,
    what: str,
    registrations: list[asyncpg.Record],
    event: asyncpg.Record,
    settings: Settings,
    *,
    position: int | None = None,
) -> int:
    """Write the e-mails of these registrations' change to their persons (actors get none); ids stable per change."""
    rows = []
    for registration in registrations:
        if registration["participant_kind"] != ParticipantKind.person or not registration["person_email"]:
            continue
        subject, body = compose(what, event, registration["id"], settings, position=position)
        rows.append(
            (
                uuid.uuid5(EMAIL_NAMESPACE, f"{registration['id']}:{what}"),
                registration["id"],
                subject,
                body,
                "pending" if settings.email_enabled else "recorded",
                registration["person_email"],
            )
        )
    await conn.executemany(
        """INSERT INTO emails (id, registration_id, subject, body, status, to_address)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING""",
        rows,
    )
    return len(rows)


async def run_sender(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    """Send pending e-mails to the address written with them (erased ones never leave)."""

    async def address(row: asyncpg.Record) -> str | None:
        return str(row["to_address"]) if row["to_address"] else None

    await mail.run_sender(pool, settings, stop, address)
