"""People of an actor: its members (persons of the directory), invited by e-mail and removed by its admins; and a
person's erasure (GDPR art. 17) by Maillage's admins.

An invitation makes the person a member (the directory's) and e-mails it a first one-time sign-in link (the
gateway's, `gateway.sessions`): the person signs in with it, no password. Addresses are shown to the actor's admins.
An erasure (`gateway.erasure`) leaves nothing of the person: its sessions end, its links stop working, the directory
forgets it and its event registrations are anonymised.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from typing import Any

import aiosmtplib
import asyncpg
import strawberry

from gateway import erasure, sessions
from gateway.context import GInfo, require_principal, require_role
from gateway.errors import from_error
from services.common.auth import Role
from services.common.errors import MaillageError

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


@strawberry.type(description="What erasing a person removed (GDPR art. 17); zeros when nothing was left of the address")
class PersonErasure:
    persons_deleted: int = strawberry.field(description="Persons of the directory deleted (0 or 1)")
    memberships_deleted: int = strawberry.field(description="Its memberships of actors, deleted with it")
    claims_deleted: int = strawberry.field(description="Claims of actors made from the address")
    registrations_anonymised: int = strawberry.field(description="Event registrations anonymised (counts kept)")
    sessions_revoked: int = strawberry.field(description="Open console sessions revoked (every actor)")
    sign_in_links_deleted: int = strawberry.field(description="Sign-in links of the address deleted")

    @staticmethod
    def of(done: erasure.Erasure) -> PersonErasure:
        return PersonErasure(
            persons_deleted=done.persons_deleted,
            memberships_deleted=done.memberships_deleted,
            claims_deleted=done.claims_deleted,
            registrations_anonymised=done.registrations_anonymised,
            sessions_revoked=done.sessions_revoked,
            sign_in_links_deleted=done.sign_in_links_deleted,
        )


async def erase_person(info: GInfo, email: str) -> PersonErasure:
    """Erase the person of an address (Maillage's admins): its sessions revoked, its sign-in links deleted, the
    directory's person, memberships and claims deleted, its registrations anonymised. Erasing again answers zeros;
    after a failure, erasing again finishes the job."""
    admin = require_role(info, Role.ADMIN)
    gateway = info.context.gateway
    try:
        done = await erasure.erase_person(
            gateway.settings,
            gateway.pool,
            gateway.clients,
            email,
            principal=admin,
            forget=gateway.credentials.forget,  # this replica at once; the others when PostgreSQL tells
        )
    except MaillageError as exc:
        raise from_error(exc) from None
    return PersonErasure.of(done)
