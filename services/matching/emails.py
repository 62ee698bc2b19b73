"""E-mail notifications in French: written when a match event arrives, sent at least once through SMTP.

Addresses are personal data and never travel in events: the sender asks the directory for the
recipient actor's contact at send time. Each e-mail has a stable id (its Message-ID) across retries.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from services.common import mail
from services.common.auth import service_headers
from services.common.encoding import one_line
from services.common.envelope import CloudEvent
from services.common.settings import Settings
from services.contracts.events import MatchV1

EMAIL_NAMESPACE = uuid.UUID("0b7f3c52-2f5d-4c43-8a52-3f0f7b2b8c61")


def email_id(event_id: str, recipient: str, actor_id: str) -> uuid.UUID:
    return uuid.uuid5(EMAIL_NAMESPACE, f"{event_id}:{recipient}:{actor_id}")


def _reasons(match: MatchV1) -> str:
    return "\n".join(f"  - {reason.text}" for reason in match.reasons if reason.code != "excluded")


def compose(event: CloudEvent, match: MatchV1, settings: Settings) -> list[tuple[str, str, str, str]]:
    """(recipient kind, actor id, subject, body) of each e-mail an event asks for."""
    link = settings.public_link(f"/besoins/{match.need_id}")
    match = match.model_copy(update={"need_title": one_line(match.need_title)})  # one line in subjects and text
    if event.type.endswith("match.found"):
        return [
            (
                "actor",
                match.actor_id,
                f"Un besoin près de chez vous : {match.need_title}",
                f"Bonjour,\n\nUne collectivité a publié un besoin qui correspond à votre structure :\n"
                f"« {match.need_title} »\n\nPourquoi vous :\n{_reasons(match)}\n\n"
                f"Voir le besoin et répondre : {link}\n\n-- Maillage",
            ),
            (
                "authority",
                match.owner_id,
                f"Nouvel acteur trouvé pour « {match.need_title} »",
                f"Bonjour,\n\nUn nouvel acteur correspond à votre besoin « {match.need_title} » "
                f"(score {match.score:.2f}) :\n{_reasons(match)}\n\nVoir les acteurs trouvés : {link}\n\n-- Maillage",
            ),
        ]
    if event.type.endswith("match.responded"):
        answer = "est intéressé" if match.status == "interested" else "a décliné"
        comment = f"\n\nSon message : {match.response_comment}" if match.response_comment else ""
        return [
            (
                "authority",
                match.owner_id,
                f"Réponse à « {match.need_title} »",
                f"Bonjour,\n\nUn acteur {answer} pour votre besoin « {match.need_title} ».{comment}\n\n"
                f"Voir les réponses : {link}\n\n-- Maillage",
            )
        ]
    return []


async def record(conn: asyncpg.Connection, event: CloudEvent, match: MatchV1, settings: Settings) -> int:
    rows = [
        (email_id(event.id, kind, actor_id), uuid.UUID(actor_id), subject, body)
        for kind, actor_id, subject, body in compose(event, match, settings)
    ]
    await conn.executemany(
        """INSERT INTO emails (id, recipient_actor, subject, body, status) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO NOTHING""",
        [(*row, "pending" if settings.email_enabled else "recorded") for row in rows],
    )
    return len(rows)


async def address_of(client: httpx.AsyncClient, settings: Settings, actor_id: uuid.UUID) -> str | None:
    response = await client.get(
        f"{settings.directory_url.rstrip('/')}/v1/actors/{actor_id}",
        headers=service_headers(settings, "matching"),
    )
    if response.status_code == 404:
        return None
    response.raise_for_status()
    contact = response.json().get("contact") or {}
    email = contact.get("email")
    return str(email) if email else None


async def run_sender(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    """Send pending e-mails, looking each recipient's address up in the directory at send time."""
    async with httpx.AsyncClient(timeout=10) as client:

        async def recipient(row: asyncpg.Record) -> str | None:
            return await address_of(client, settings, row["recipient_actor"])

        await mail.run_sender(pool, settings, stop, recipient)
