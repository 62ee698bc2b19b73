"""What a resolver sees as `info.context`: the gateway's shared state, the caller, and this request's loaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from strawberry.types import Info

from gateway.auth import Caller, CredentialCache, RateLimiter
from gateway.clients import ServiceClients
from gateway.errors import error
from gateway.loaders import Loaders
from gateway.subscriptions import MatchFeed
from services.common.auth import Principal, Role
from services.common.settings import Settings
from services.contracts.errors import ErrorCode

if TYPE_CHECKING:  # the request's own types (Starlette's), not gateway modules
    from starlette.requests import Request
    from starlette.websockets import WebSocket


@dataclass
class Gateway:
    """What every request shares: settings, the services' clients, the credential store, the match feed."""

    settings: Settings
    clients: ServiceClients
    pool: asyncpg.Pool
    feed: MatchFeed
    limiter: RateLimiter
    credentials: CredentialCache = field(default_factory=CredentialCache)


class GatewayContext:
    """One GraphQL request (or one WebSocket connection): the gateway, the caller and this request's loaders."""

    def __init__(self, gateway: Gateway, caller: Caller | None, auth_error: str | None = None) -> None:
        self.request: Request | WebSocket | None = None
        self.gateway = gateway
        self.caller = caller
        self.auth_error = auth_error
        self.connection_params: dict[str, Any] | None = None
        self.loaders = Loaders(gateway.clients, self.principal)

    @property
    def principal(self) -> Principal | None:
        return self.caller.principal if self.caller is not None else None

    def fresh_loaders(self) -> Loaders:
        """New loaders (a subscription resolves each event with fresh data)."""
        self.loaders = Loaders(self.gateway.clients, self.principal)
        return self.loaders


GInfo = Info[GatewayContext, None]


def require_principal(info: GInfo) -> Principal:
    principal = info.context.principal
    if principal is None:
        raise error(
            info.context.auth_error or "authentication required: send Authorization: Bearer <token>",
            ErrorCode.UNAUTHENTICATED,
        )
    return principal


def require_role(info: GInfo, *roles: Role) -> Principal:
    principal = require_principal(info)
    if principal.role not in roles:
        names = " or ".join(role.value for role in roles)
        raise error(f"this needs the role {names}; you are {principal.role.value}", ErrorCode.FORBIDDEN)
    return principal
