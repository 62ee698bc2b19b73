"""The public GraphQL schema (the foundation's part: who am I; the domain issues add the rest)."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.types import Info

from services.common.auth import Principal


@strawberry.type(description="The authenticated caller")
class PrincipalType:
    subject: str
    role: str
    actor_id: strawberry.ID | None
    scopes: list[str]


def _principal(info: Info[dict[str, Any], None]) -> Principal:
    principal: Principal | None = info.context.get("principal")
    if principal is None:
        reason = info.context.get("auth_error")
        raise GraphQLError(
            reason or "authentication required: send Authorization: Bearer <token>",
            extensions={"code": "UNAUTHENTICATED"},
        )
    return principal


@strawberry.type
class Query:
    @strawberry.field(description="The caller of this request")
    def me(self, info: Info[dict[str, Any], None]) -> PrincipalType:
        principal = _principal(info)
        return PrincipalType(
            subject=principal.subject,
            role=principal.role.value,
            actor_id=strawberry.ID(principal.actor_id) if principal.actor_id else None,
            scopes=sorted(principal.scopes),
        )


schema = strawberry.Schema(query=Query)
