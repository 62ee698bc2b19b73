"""Partner credentials: admins issue a bearer token for an app, list them, and revoke one (refused at once)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import strawberry

from gateway import auth
from gateway.context import GInfo, require_role
from gateway.errors import bad_input, error, from_error
from services.common.auth import Role
from services.common.errors import MaillageError
from services.contracts.errors import ErrorCode

strawberry.enum(Role, name="Role", description="What a caller may do")


@strawberry.type(description="A credential issued to a partner app, an authority or an actor (its token is not kept)")
class Credential:
    id: strawberry.ID = strawberry.field(description="The token's jti")
    name: str
    role: str
    subject: str
    actor_id: strawberry.ID | None
    scopes: list[str]
    rate_limit_per_minute: int | None
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None

    @staticmethod
    def of(row: dict[str, Any]) -> Credential:
        return Credential(
            id=strawberry.ID(str(row["id"])),
            name=row["name"],
            role=row["role"],
            subject=row["subject"],
            actor_id=strawberry.ID(row["actor_id"]) if row["actor_id"] else None,
            scopes=list(row["scopes"]),
            rate_limit_per_minute=row["rate_limit_per_minute"],
            issued_by=row["issued_by"],
            issued_at=row["issued_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
        )


@strawberry.type(description="A new credential and its bearer token, shown this once")
class IssuedCredential:
    credential: Credential
    token: str


@strawberry.input
class IssueCredentialInput:
    name: str = strawberry.field(description="Who holds it: the partner app, the authority…")
    role: Role
    actor_id: strawberry.ID | None = strawberry.field(default=None, description="For collectivity and actor roles")
    scopes: list[str] | None = None
    ttl_days: int = strawberry.field(default=365, description="Lifetime in days (at most 730)")
    rate_limit_per_minute: int | None = strawberry.field(default=None, description="Default: the gateway's")


async def credentials(info: GInfo, include_revoked: bool = False) -> list[Credential]:
    require_role(info, Role.ADMIN)
    rows = await auth.list_credentials(info.context.gateway.pool, include_revoked=include_revoked)
    return [Credential.of(row) for row in rows]


async def issue_credential(info: GInfo, input: IssueCredentialInput) -> IssuedCredential:
    admin = require_role(info, Role.ADMIN)
    gateway = info.context.gateway
    if not 1 <= input.ttl_days <= auth.MAX_CREDENTIAL_TTL.days:  # before timedelta, which overflows at 10⁹ days
        raise bad_input(f"ttlDays: between 1 and {auth.MAX_CREDENTIAL_TTL.days}", field="ttlDays", rule="range")
    try:
        row, token = await auth.issue_credential(
            gateway.settings,
            gateway.pool,
            name=input.name,
            role=Role(input.role),
            issued_by=admin.subject,
            actor_id=str(input.actor_id) if input.actor_id else None,
            scopes=input.scopes,
            ttl=timedelta(days=input.ttl_days),
            rate_limit_per_minute=input.rate_limit_per_minute,
        )
    except MaillageError as exc:
        raise from_error(exc) from None
    return IssuedCredential(credential=Credential.of(row), token=token)


async def revoke_credential(info: GInfo, id: strawberry.ID) -> Credential:
    admin = require_role(info, Role.ADMIN)
    try:
        credential_id = uuid.UUID(str(id))
    except ValueError:
        raise error(f"no credential {id}", ErrorCode.NOT_FOUND) from None
    row = await auth.revoke_credential(info.context.gateway.pool, credential_id, revoked_by=admin.subject)
    info.context.gateway.credentials.forget(credential_id)  # this replica at once; the others when PostgreSQL tells
    if row is None:
        raise error(f"no credential {id}", ErrorCode.NOT_FOUND)
    return Credential.of(row)
