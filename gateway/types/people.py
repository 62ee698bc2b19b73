"""People of an actor: its members (persons of the directory), invited by e-mail and removed by its admins.

An invitation makes the person a member (the directory's) and e-mails it a first one-time sign-in link (the
gateway's, `gateway.sessions`): the person signs in with it, no password. Addresses are shown to the actor's admins.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from typing import Any

import aiosmtplib
import asyncpg
import strawberry

from gateway import sessions
from gateway.context import GInfo, require_principal

logger = logging.getLogger("maillage.gateway")


@strawberry.enum(description="What a person is in an actor: a member acts for it, an admin also manages its members")
class MemberRole(enum.Enum):
    MEMBER = "member"
    ADMIN = "admin"


@strawberry.type(description="A person of the directory (its address is personal data: shown to its actors' admins)")
class Person:
    id: strawberry.ID
    name: str
    email: str


@strawberry.type(description="A person acting for an actor, and as what")
class Member:
    person: Person
    role: MemberRole
    created_at: datetime

    @staticmethod
    def of(data: dict[str, Any]) -> Member:
        person = data["person"]
        return Member(
            person=Person(id=strawberry.ID(person["id"]), name=person["name"], email=person["email"]),
            role=MemberRole(data["role"]),
            created_at=datetime.fromisoformat(data["created_at"]),
        )


@strawberry.input(description="Invite a person by e-mail (created when new; a known address keeps its name)")
class InviteMemberInput:
    email: str
    name: str
    role: MemberRole = MemberRole.MEMBER


async def members(info: GInfo, actor_id: strawberry.ID) -> list[Member]:
    """The members of an actor (Maillage's admins, and the actor's own admin members)."""
    principal = require_principal(info)
    listed = await info.context.gateway.clients.directory.list_members(str(actor_id), principal)
    return [Member.of(item) for item in listed]


async def invite_member(info: GInfo, actor_id: strawberry.ID, input: InviteMemberInput) -> Member:
    """Make a person a member of the actor and e-mail its first sign-in link (Maillage's admins, and the actor's
    admin members)."""
    principal = require_principal(info)
    gateway = info.context.gateway
    body = {"email": input.email, "name": input.name, "role": input.role.value}
    member = await gateway.clients.directory.invite_member(str(actor_id), body, principal)
    actor = await gateway.clients.directory.actors_batch([str(actor_id)], principal)
    try:
        await sessions.invite(
            gateway.settings,
            gateway.pool,
            email=member["person"]["email"],
            person=member["person"],
            actor_name=(actor[0] or {}).get("name", "Maillage"),
        )
    except (aiosmtplib.SMTPException, OSError, asyncpg.PostgresError, ValueError) as exc:
        # A member all the same: the person asks for a link at /connexion.
        logger.warning("invitation's sign-in link not sent: %s", exc)
    return Member.of(member)


async def remove_member(info: GInfo, actor_id: strawberry.ID, person_id: strawberry.ID) -> bool:
    """Remove a person from an actor: its open sessions for the actor are revoked at once."""
    principal = require_principal(info)
    gateway = info.context.gateway
    await gateway.clients.directory.remove_member(str(actor_id), str(person_id), principal)
    for credential_id in await sessions.end_sessions_of(gateway.pool, str(person_id), str(actor_id), "member-removed"):
        gateway.credentials.forget(credential_id)  # this replica at once; the others when PostgreSQL tells
    return True
