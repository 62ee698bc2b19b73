"""Who is calling: mint and verify public tokens, gateway-forwarded identities and service identities for FastAPI."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from services.common.errors import Forbidden, Unauthenticated
from services.common.settings import PROCESSES, Settings

ALGORITHM = "HS256"
LEEWAY_S = 10

PRINCIPAL_HEADER = "X-Maillage-Principal"
AUTHORIZATION_HEADER = "Authorization"

INTERNAL_ISSUER = "maillage-gateway"
INTERNAL_AUDIENCE = "maillage-internal"
INTERNAL_KID = "internal"

# A process calling a service for itself (the matching notifier reading a contact, a replica rebuild, the gateway
# looking up the person signing in) sends its own
# identity: another header, issuer and audience, so that it can never pass for a caller's forwarded identity.
SERVICE_HEADER = "X-Maillage-Service"
SERVICE_ISSUER = "maillage-service"
SERVICE_AUDIENCE = "maillage-service"
SERVICE_KID = "service"


class Role(StrEnum):
    """What a caller is; decides which actions it may take."""

    ADMIN = "admin"
    PARTNER = "partner"
    COLLECTIVITY = "collectivity"
    ACTOR = "actor"


ROLES_BOUND_TO_ACTOR = frozenset({Role.COLLECTIVITY, Role.ACTOR})


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its subject, role, the actor it is bound to and its scopes."""

    subject: str
    role: Role
    actor_id: str | None = None
    scopes: frozenset[str] = frozenset()
    token_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            object.__setattr__(self, "role", Role(self.role))
        if not isinstance(self.scopes, frozenset):
            object.__setattr__(self, "scopes", frozenset(self.scopes))
        if self.role in ROLES_BOUND_TO_ACTOR and not self.actor_id:
            raise ValueError(f"role {self.role.value!r} requires an actor id")

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def has_scope(self, scope: str) -> bool:
        """Whether the caller holds `scope`; admins hold every scope."""
        return self.is_admin or scope in self.scopes

    def require_role(self, *roles: Role | str) -> None:
        """Raise `Forbidden` unless the caller has one of `roles` (admins are not exempt)."""
        wanted = [Role(role) for role in roles]
        if self.role in wanted:
            return
        names = " or ".join(repr(role.value) for role in wanted) or "(none)"
        raise Forbidden(f"this action requires role {names}; you are {self.role.value!r}")

    def acts_for(self, actor_id: str) -> bool:
        """Whether the caller may act on behalf of `actor_id` (admins may act for anyone)."""
        if self.is_admin:
            return True
        return self.role in ROLES_BOUND_TO_ACTOR and self.actor_id == actor_id


def new_secret() -> str:
    """A fresh random secret suitable as an HS256 key."""
    return secrets.token_urlsafe(48)


# --- public tokens ---------------------------------------------------------------


def mint_token(
    settings: Settings,
    *,
    role: Role | str,
    subject: str | None = None,
    actor_id: str | None = None,
    scopes: Iterable[str] = (),
    ttl: timedelta = timedelta(hours=1),
    token_id: str | None = None,
) -> str:
    """A public token signed with the active key (`settings.jwt_active_kid`); `token_id` is its jti."""
    keys = settings.signing_keys()
    if not keys:
        raise ValueError('no signing key configured: set MAILLAGE_JWT_KEYS to {"kid": "secret"}')
    kid = settings.jwt_active_kid
    if not kid:
        raise ValueError("no active signing key: set MAILLAGE_JWT_ACTIVE_KID")
    if kid not in keys:
        raise ValueError(f"active kid {kid!r} is not among the configured keys {sorted(keys)}")
    principal = _new_principal(role, subject, actor_id, scopes, token_id)
    return _encode(
        principal,
        key=keys[kid],
        kid=kid,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=ttl,
    )


def verify_token(
    settings: Settings,
    token: str,
    *,
    is_revoked: Callable[[str], bool] | None = None,
) -> Principal:
    """The principal of a valid public token; raises `Unauthenticated` otherwise.

    Any configured key verifies (rotation). `is_revoked` receives the token's jti.
    """
    claims = _decode(
        token,
        keys=settings.signing_keys(),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    principal = _principal_from_claims(claims, id_claim="jti")
    if is_revoked is not None:
        if principal.token_id is None:
            raise Unauthenticated("token has no jti claim, so its revocation cannot be checked")
        if is_revoked(principal.token_id):
            raise Unauthenticated("token revoked")
    return principal


# --- forwarded identities (gateway -> service) ------------------------------------


def mint_internal(settings: Settings, principal: Principal) -> str:
    """A short-lived token carrying `principal`, signed with the gateway's internal key."""
    if not settings.internal_key:
        raise ValueError("no internal key configured: set MAILLAGE_INTERNAL_KEY")
    return _encode(
        principal,
        key=settings.internal_key,
        kid=INTERNAL_KID,
        issuer=INTERNAL_ISSUER,
        audience=INTERNAL_AUDIENCE,
        ttl=timedelta(seconds=settings.internal_token_ttl_s),
        forwarded=True,
    )


def verify_internal(settings: Settings, token: str) -> Principal:
    """The principal a gateway forwarded; only the internal key verifies it."""
    if not settings.internal_key:
        raise Unauthenticated("forwarded identity refused: no internal key is configured")
    claims = _decode(
        token,
        keys={INTERNAL_KID: settings.internal_key},
        issuer=INTERNAL_ISSUER,
        audience=INTERNAL_AUDIENCE,
        what="forwarded identity",
    )
    return _principal_from_claims(claims, id_claim="tid", what="forwarded identity")


# --- service identities (service -> service) --------------------------------------


@dataclass(frozen=True)
class ServiceIdentity:
    """A Maillage service calling for itself: no role, no actor; only routes that name the service accept it."""

    service: str

    @property
    def subject(self) -> str:
        return f"service:{self.service}"


def mint_service(settings: Settings, service: str) -> str:
    """A short-lived service identity for `service`'s own calls to another service."""
    if service not in PROCESSES:
        raise ValueError(f"unknown service {service!r}; expected one of {list(PROCESSES)}")
    if not settings.internal_key:
        raise ValueError("no internal key configured: set MAILLAGE_INTERNAL_KEY")
    now = datetime.now(UTC)
    claims = {
        "iss": SERVICE_ISSUER,
        "aud": SERVICE_AUDIENCE,
        "sub": f"service:{service}",
        "svc": service,
        "iat": now,
        "exp": now + timedelta(seconds=settings.internal_token_ttl_s),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.internal_key, algorithm=ALGORITHM, headers={"kid": SERVICE_KID})


def verify_service(settings: Settings, token: str) -> ServiceIdentity:
    """The service a service identity names; raises `Unauthenticated` otherwise."""
    if not settings.internal_key:
        raise Unauthenticated("service identity refused: no internal key is configured")
    claims = _decode(
        token,
        keys={SERVICE_KID: settings.internal_key},
        issuer=SERVICE_ISSUER,
        audience=SERVICE_AUDIENCE,
        what="service identity",
    )
    service = claims.get("svc")
    if service not in PROCESSES or claims.get("sub") != f"service:{service}":
        raise Unauthenticated(f"service identity names no known service (svc {service!r})")
    return ServiceIdentity(str(service))


def service_headers(settings: Settings, service: str) -> dict[str, str]:
    """The headers of `service`'s own call to another service."""
    return {SERVICE_HEADER: mint_service(settings, service)}


def forwarded_headers(settings: Settings, principal: Principal) -> dict[str, str]:
    """The headers of a call made for `principal`, as the gateway forwards it (operators' tools hold the key too)."""
    return {PRINCIPAL_HEADER: mint_internal(settings, principal)}


# --- FastAPI ------------------------------------------------------------------------


def _settings_of(request: Request) -> Settings:
    settings = request.app.state.settings
    if not isinstance(settings, Settings):
        raise RuntimeError("app.state.settings must hold the process's Settings")
    return settings


async def get_optional_principal(request: Request) -> Principal | None:
    """The caller the gateway forwarded, or None when the request carries no identity at all.

    Services trust nothing else: a public token goes to the gateway, which checks it against its credentials
    (revocation) before forwarding who the caller is.
    """
    settings = _settings_of(request)
    if request.headers.get(SERVICE_HEADER) is not None:
        raise Forbidden("a service identity is accepted only by the routes that name its service, not by this one")
    forwarded = request.headers.get(PRINCIPAL_HEADER)
    if forwarded is None:
        if request.headers.get(AUTHORIZATION_HEADER) is not None:
            raise Unauthenticated(
                "services accept only the identity the gateway forwards: send your bearer token to the gateway"
            )
        return None
    principal = verify_internal(settings, forwarded.strip())
    request.state.principal = principal
    return principal


async def get_principal(request: Request) -> Principal:
    """The caller; raises `Unauthenticated` without a forwarded identity."""
    principal = await get_optional_principal(request)
    if principal is None:
        raise Unauthenticated("missing credentials: call through the gateway with Authorization: Bearer <token>")
    return principal


def principal_or_service(*services: str) -> Callable[[Request], Awaitable[Principal | ServiceIdentity | None]]:
    """The dependency of a route that also answers the named services' own calls (their service identity)."""
    unknown = set(services) - set(PROCESSES)
    if not services or unknown:
        raise ValueError(f"name the services this route answers, among {list(PROCESSES)} (got {sorted(unknown)})")

    async def caller(request: Request) -> Principal | ServiceIdentity | None:
        token = request.headers.get(SERVICE_HEADER)
        if token is None:
            return await get_optional_principal(request)
        if request.headers.get(PRINCIPAL_HEADER) is not None:
            raise Unauthenticated("send a forwarded identity or a service identity, not both")
        identity = verify_service(_settings_of(request), token.strip())
        if identity.service not in services:
            names = " or ".join(repr(name) for name in services)
            raise Forbidden(f"service {identity.service!r} may not call this route; it answers {names}")
        return identity

    return caller


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


# --- internals ----------------------------------------------------------------------


def _new_principal(
    role: Role | str, subject: str | None, actor_id: str | None, scopes: Iterable[str], token_id: str | None = None
) -> Principal:
    try:
        role = Role(role)
    except ValueError:
        raise ValueError(f"unknown role {role!r}; expected one of {[r.value for r in Role]}") from None
    if role in ROLES_BOUND_TO_ACTOR and not actor_id:
        raise ValueError(f"role {role.value!r} requires an actor id")
    if isinstance(scopes, str):
        raise ValueError("scopes must be an iterable of scope names, not a single string")
    return Principal(
        subject=subject or f"{role.value}:{actor_id or uuid.uuid4().hex}",
        role=role,
        actor_id=actor_id,
        scopes=frozenset(scopes),
        token_id=token_id,
    )


def _encode(
    principal: Principal,
    *,
    key: str,
    kid: str,
    issuer: str,
    audience: str,
    ttl: timedelta,
    forwarded: bool = False,
) -> str:
    if ttl <= timedelta(0):
        raise ValueError(f"token lifetime must be positive, got {ttl}")
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": principal.subject,
        "role": principal.role.value,
        "scopes": sorted(principal.scopes),
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex if forwarded or not principal.token_id else principal.token_id,
    }
    if principal.actor_id:
        claims["actor"] = principal.actor_id
    if forwarded and principal.token_id:
        claims["tid"] = principal.token_id
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


# Tokens already verified, by (token, key, issuer, audience), until they expire: the same bearer token (a
# partner's, or the identity the gateway forwards, re-signed every half lifetime) is sent on every request, and
# checking its signature and claims again each time was a visible share of a request's CPU.
VERIFIED_CACHE_SIZE = 10_000
MAX_TOKEN_CHARS = 8192
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_=-]*\.[A-Za-z0-9_=-]*\.[A-Za-z0-9_=-]*")
_VERIFIED: dict[tuple[str, str, str, str], tuple[dict[str, Any], float]] = {}


def _decode(
    token: str,
    *,
    keys: Mapping[str, str],
    issuer: str,
    audience: str,
    what: str = "token",
) -> dict[str, Any]:
    if not isinstance(token, str) or not token:
        raise Unauthenticated(f"malformed {what}: empty")
    # Ours are a few hundred characters of base64url: anything longer, or not ASCII, is refused before decoding.
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated(f"malformed {what}: over {MAX_TOKEN_CHARS} characters")
    if not _COMPACT_JWS.fullmatch(token):
        raise Unauthenticated(f"malformed {what}: not three base64url parts separated by dots")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:  # PyJWT's header checks (a kid that is not a string, crit) included
        raise Unauthenticated(f"malformed {what}: {exc}") from None
    if "crit" in header:
        raise Unauthenticated(f"{what} with critical header parameters refused: none is understood here")
    alg = header.get("alg")
    if alg is None or str(alg).lower() == "none":
        raise Unauthenticated(f"unsigned {what} (alg none) refused")
    if alg != ALGORITHM:
        raise Unauthenticated(f"{what} algorithm {alg!r} refused: only {ALGORITHM} is accepted")
    kid = header.get("kid")
    if kid is None:
        raise Unauthenticated(f"{what} has no kid header")
    if not isinstance(kid, str) or kid not in keys:
        raise Unauthenticated(f"{what} signed with unknown key id {repr(kid)[:80]}")
    cache_key = (token, keys[kid], issuer, audience)
    cached = _VERIFIED.get(cache_key)
    if cached is not None and time.time() < cached[1]:
        return cached[0]
    claims = _verify(token, keys[kid], issuer=issuer, audience=audience, what=what)
    if len(_VERIFIED) >= VERIFIED_CACHE_SIZE:
        _VERIFIED.clear()
    # PyJWT checked that exp is an integer, however large: kept no longer than a day, it fits a float.
    _VERIFIED[cache_key] = (claims, min(int(claims["exp"]), int(time.time()) + 86_400))
    return claims


def _verify(token: str, key: str, *, issuer: str, audience: str, what: str) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated(f"{what} expired") from None
    except jwt.InvalidSignatureError:
        raise Unauthenticated(f"{what} signature is invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthenticated(f"{what} lacks the required {exc.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise Unauthenticated(f"{what} is not meant for audience {audience!r}") from None
    except jwt.InvalidIssuerError:
        raise Unauthenticated(f"{what} was not issued by {issuer!r}") from None
    except jwt.ImmatureSignatureError:
        raise Unauthenticated(f"{what} is not valid yet") from None
    except jwt.DecodeError as exc:
        raise Unauthenticated(f"malformed {what}: {exc}") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"invalid {what}: {exc}") from None


def _principal_from_claims(claims: Mapping[str, Any], *, id_claim: str, what: str = "token") -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated(f"{what} has an empty or non-string sub claim")
    raw_role = claims.get("role")
    if raw_role is None:
        raise Unauthenticated(f"{what} has no role claim")
    try:
        role = Role(raw_role)
    except ValueError:
        raise Unauthenticated(f"{what} has unknown role {raw_role!r}") from None
    actor_id = claims.get("actor")
    if actor_id is not None and (not isinstance(actor_id, str) or not actor_id):
        raise Unauthenticated(f"{what} has a malformed actor claim")
    if role in ROLES_BOUND_TO_ACTOR and not actor_id:
        raise Unauthenticated(f"{what} with role {role.value!r} lacks the actor claim")
    scopes = claims.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise Unauthenticated(f"{what} has a malformed scopes claim (expected a list of strings)")
    token_id = claims.get(id_claim)
    if token_id is not None and not isinstance(token_id, str):
        raise Unauthenticated(f"{what} has a malformed {id_claim} claim")
    return Principal(
        subject=subject,
        role=role,
        actor_id=actor_id,
        scopes=frozenset(scopes),
        token_id=token_id,
    )
