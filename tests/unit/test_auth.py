"""Unit tests of services.common.auth: tokens, forwarded identities and the FastAPI dependency."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from services.common import auth as auth_module
from services.common.auth import (
    INTERNAL_AUDIENCE,
    INTERNAL_ISSUER,
    INTERNAL_KID,
    PRINCIPAL_HEADER,
    SERVICE_AUDIENCE,
    SERVICE_HEADER,
    SERVICE_ISSUER,
    SERVICE_KID,
    CurrentPrincipal,
    OptionalPrincipal,
    Principal,
    Role,
    ServiceIdentity,
    mint_internal,
    mint_service,
    mint_token,
    new_secret,
    principal_or_service,
    verify_internal,
    verify_service,
    verify_token,
)
from services.common.errors import Forbidden, Unauthenticated, install_error_handlers
from services.common.settings import Settings

K1 = "k1-secret-0123456789abcdef0123456789-0123456789-abcdefghijklmnopqrstuvwxyz"
K2 = "k2-secret-0123456789abcdef0123456789-0123456789-abcdefghijklmnopqrstuvwxyz"
OTHER = "not-the-right-secret-0123456789abcdef0123456789-0123456789-abcdefghijklmn"
INTERNAL = "internal-secret-0123456789abcdef0123456789-0123456789-abcdefghijklmnopqrs"


def make_settings(keys: dict[str, str] | None = None, active: str = "k1", internal: str = INTERNAL) -> Settings:
    return Settings(
        jwt_keys=json.dumps({"k1": K1} if keys is None else keys),
        jwt_active_kid=active,
        jwt_issuer="maillage",
        jwt_audience="maillage-api",
        internal_key=internal,
        internal_token_ttl_s=60,
    )


@pytest.fixture
def settings() -> Settings:
    return make_settings()


def claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base: dict[str, Any] = {
        "iss": "maillage",
        "aud": "maillage-api",
        "sub": "actor:a1",
        "role": "actor",
        "actor": "a1",
        "scopes": ["read"],
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: str = K1, kid: str | None = "k1", alg: str = "HS256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refused(settings: Settings, token: str) -> str:
    with pytest.raises(Unauthenticated) as info:
        verify_token(settings, token)
    assert info.value.status == 401
    return info.value.detail


# --- Principal -------------------------------------------------------------------


def test_principal_rules() -> None:
    admin = Principal(subject="admin:x", role=Role.ADMIN)
    actor = Principal(subject="actor:a1", role=Role.ACTOR, actor_id="a1", scopes=frozenset({"r"}))
    partner = Principal(subject="partner:p", role=Role.PARTNER, scopes=frozenset({"r"}))

    assert admin.is_admin and not actor.is_admin
    assert admin.has_scope("anything")
    assert actor.has_scope("r") and not actor.has_scope("w")
    assert admin.acts_for("a1") and admin.acts_for("a2")
    assert actor.acts_for("a1") and not actor.acts_for("a2")
    assert not partner.acts_for("a1")

    actor.require_role(Role.ACTOR, Role.COLLECTIVITY)
    with pytest.raises(Forbidden, match="'partner'") as info:
        actor.require_role(Role.PARTNER)
    assert info.value.status == 403
    assert "'actor'" in info.value.detail


@pytest.mark.parametrize("role", [Role.ACTOR, Role.COLLECTIVITY])
def test_principal_bound_roles_need_actor(role: Role) -> None:
    with pytest.raises(ValueError, match="actor id"):
        Principal(subject="x", role=role)


def test_new_secret_is_random_and_long() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert len(first) >= 64


# --- public tokens -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "actor_id"),
    [(Role.ADMIN, None), (Role.PARTNER, None), (Role.COLLECTIVITY, "c1"), (Role.ACTOR, "a1")],
)
def test_roundtrip_each_role(settings: Settings, role: Role, actor_id: str | None) -> None:
    token = mint_token(settings, role=role, actor_id=actor_id, scopes=["read", "write"])
    principal = verify_token(settings, token)

    assert principal.role is role
    assert principal.actor_id == actor_id
    assert principal.scopes == frozenset({"read", "write"})
    assert principal.subject.startswith(f"{role.value}:")
    assert principal.token_id is not None and len(principal.token_id) == 32
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    payload = jwt.decode(token, K1, algorithms=["HS256"], audience="maillage-api")
    assert payload["iss"] == "maillage"
    assert payload["exp"] - payload["iat"] == 3600


def test_mint_explicit_subject_and_actor_default_subject(settings: Settings) -> None:
    assert verify_token(settings, mint_token(settings, role="admin", subject="alice")).subject == ("alice")
    assert verify_token(settings, mint_token(settings, role=Role.ACTOR, actor_id="a9")).subject == ("actor:a9")


@pytest.mark.parametrize("role", [Role.ACTOR, Role.COLLECTIVITY])
def test_mint_refuses_bound_role_without_actor(settings: Settings, role: Role) -> None:
    with pytest.raises(ValueError, match="requires an actor id"):
        mint_token(settings, role=role)


def test_mint_refuses_without_key_or_unknown_kid() -> None:
    with pytest.raises(ValueError, match="no signing key"):
        mint_token(make_settings(keys={}), role=Role.ADMIN)
    with pytest.raises(ValueError, match="'k9' is not among"):
        mint_token(make_settings(active="k9"), role=Role.ADMIN)
    with pytest.raises(ValueError, match="unknown role"):
        mint_token(make_settings(), role="superuser")


def test_expired(settings: Settings) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    token = sign(claims(iat=past, exp=past + timedelta(hours=1)))
    assert refused(settings, token) == "token expired"


def test_expiry_within_leeway_is_accepted(settings: Settings) -> None:
    now = datetime.now(UTC)
    token = sign(claims(iat=now - timedelta(minutes=1), exp=now - timedelta(seconds=2)))
    assert verify_token(settings, token).actor_id == "a1"


def test_a_verified_token_is_verified_again_once_it_expires(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = mint_token(settings, role=Role.ACTOR, actor_id="a1", ttl=timedelta(minutes=1))
    checks: list[str] = []
    verify = auth_module._verify

    def counted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        checks.append("jwt")
        return verify(*args, **kwargs)

    monkeypatch.setattr(auth_module, "_verify", counted)
    assert verify_token(settings, token).actor_id == "a1"
    assert verify_token(settings, token).actor_id == "a1"
    assert checks == ["jwt"]  # the second time from the cache of verified tokens
    later = datetime.now(UTC).timestamp() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _FrozenDatetime(later))
    assert refused(settings, token) == "token expired"


def test_a_cached_token_is_refused_once_its_key_is_gone(settings: Settings) -> None:
    token = mint_token(settings, role=Role.ADMIN)
    assert verify_token(settings, token).is_admin
    assert "unknown key id 'k1'" in refused(make_settings(keys={"k2": K2}, active="k2"), token)
    assert refused(make_settings(keys={"k1": OTHER}), token) == "token signature is invalid"


class _FrozenDatetime:
    """`datetime` as PyJWT sees it, frozen at a timestamp."""

    def __init__(self, timestamp: float) -> None:
        self.timestamp = timestamp

    def now(self, tz: Any = None) -> datetime:
        return datetime.fromtimestamp(self.timestamp, tz)

    def __getattr__(self, name: str) -> Any:
        return getattr(datetime, name)


def test_alg_none_refused(settings: Settings) -> None:
    payload = claims(iat=int(datetime.now(UTC).timestamp()))
    payload["exp"] = payload["iat"] + 300
    token = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{b64(payload)}."
    assert "alg none" in refused(settings, token)


def test_other_alg_refused(settings: Settings) -> None:
    token = sign(claims(), alg="HS512")
    assert "only HS256" in refused(settings, token)


def test_unknown_kid(settings: Settings) -> None:
    assert "unknown key id 'k7'" in refused(settings, sign(claims(), kid="k7"))


def test_missing_kid(settings: Settings) -> None:
    assert refused(settings, sign(claims(), kid=None)) == "token has no kid header"


def test_wrong_signature(settings: Settings) -> None:
    assert refused(settings, sign(claims(), key=OTHER)) == "token signature is invalid"


def test_tampered_payload(settings: Settings) -> None:
    token = mint_token(settings, role=Role.ACTOR, actor_id="a1")
    header, _, signature = token.split(".")
    forged = claims(role="admin", actor=None, sub="actor:a1")
    forged["iat"] = int(forged["iat"].timestamp())
    forged["exp"] = int(forged["exp"].timestamp())
    assert refused(settings, f"{header}.{b64(forged)}.{signature}") == "token signature is invalid"


def test_missing_role(settings: Settings) -> None:
    assert refused(settings, sign(claims(role=None))) == "token has no role claim"


def test_unknown_role(settings: Settings) -> None:
    assert refused(settings, sign(claims(role="root"))) == "token has unknown role 'root'"


def test_collectivity_without_actor(settings: Settings) -> None:
    detail = refused(settings, sign(claims(role="collectivity", actor=None)))
    assert detail == "token with role 'collectivity' lacks the actor claim"


@pytest.mark.parametrize("claim", ["exp", "iat", "sub"])
def test_required_claims(settings: Settings, claim: str) -> None:
    payload = claims()
    del payload[claim]
    assert refused(settings, sign(payload)) == f"token lacks the required '{claim}' claim"


def test_wrong_audience(settings: Settings) -> None:
    detail = refused(settings, sign(claims(aud="someone-else")))
    assert detail == "token is not meant for audience 'maillage-api'"


def test_wrong_issuer(settings: Settings) -> None:
    assert refused(settings, sign(claims(iss="evil"))) == "token was not issued by 'maillage'"


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "a.b"])
def test_malformed(settings: Settings, token: str) -> None:
    assert refused(settings, token).startswith("malformed token")


def test_rotation(settings: Settings) -> None:
    old = mint_token(settings, role=Role.PARTNER)

    rotated = make_settings(keys={"k1": K1, "k2": K2}, active="k2")
    new = mint_token(rotated, role=Role.PARTNER)
    assert jwt.get_unverified_header(new)["kid"] == "k2"
    assert verify_token(rotated, old).role is Role.PARTNER
    assert verify_token(rotated, new).role is Role.PARTNER

    retired = make_settings(keys={"k2": K2}, active="k2")
    assert verify_token(retired, new).role is Role.PARTNER
    assert "unknown key id 'k1'" in refused(retired, old)


def test_revocation_hook(settings: Settings) -> None:
    token = mint_token(settings, role=Role.ADMIN)
    seen: list[str] = []

    def revoked(jti: str) -> bool:
        seen.append(jti)
        return True

    with pytest.raises(Unauthenticated, match="token revoked"):
        verify_token(settings, token, is_revoked=revoked)
    assert seen == [jwt.decode(token, options={"verify_signature": False})["jti"]]
    assert verify_token(settings, token, is_revoked=lambda _: False).is_admin


# --- forwarded identities ----------------------------------------------------------


def test_internal_roundtrip(settings: Settings) -> None:
    original = verify_token(settings, mint_token(settings, role=Role.COLLECTIVITY, actor_id="c1", scopes=["x"]))
    token = mint_internal(settings, original)

    header = jwt.get_unverified_header(token)
    assert header["kid"] == INTERNAL_KID
    payload = jwt.decode(token, INTERNAL, algorithms=["HS256"], audience=INTERNAL_AUDIENCE)
    assert payload["iss"] == INTERNAL_ISSUER
    assert payload["exp"] - payload["iat"] == 60
    assert verify_internal(settings, token) == original


def test_internal_signed_with_public_key_refused(settings: Settings) -> None:
    now = datetime.now(UTC)
    forged = jwt.encode(
        {
            "iss": INTERNAL_ISSUER,
            "aud": INTERNAL_AUDIENCE,
            "sub": "admin:x",
            "role": "admin",
            "iat": now,
            "exp": now + timedelta(minutes=1),
        },
        K1,
        algorithm="HS256",
        headers={"kid": INTERNAL_KID},
    )
    with pytest.raises(Unauthenticated, match="forwarded identity signature is invalid"):
        verify_internal(settings, forged)


def test_public_token_presented_as_internal_refused(settings: Settings) -> None:
    token = mint_token(settings, role=Role.ADMIN)
    with pytest.raises(Unauthenticated, match="unknown key id 'k1'"):
        verify_internal(settings, token)


def test_internal_token_presented_as_public_refused(settings: Settings) -> None:
    token = mint_internal(settings, Principal(subject="admin:x", role=Role.ADMIN))
    assert "unknown key id 'internal'" in refused(settings, token)


def test_internal_needs_key(settings: Settings) -> None:
    principal = Principal(subject="admin:x", role=Role.ADMIN)
    token = mint_internal(settings, principal)
    keyless = make_settings(internal="")
    with pytest.raises(ValueError, match="no internal key"):
        mint_internal(keyless, principal)
    with pytest.raises(Unauthenticated, match="no internal key"):
        verify_internal(keyless, token)


# --- service identities ------------------------------------------------------------


def test_service_identity_roundtrip(settings: Settings) -> None:
    token = mint_service(settings, "matching")
    assert jwt.get_unverified_header(token)["kid"] == SERVICE_KID
    payload = jwt.decode(token, INTERNAL, algorithms=["HS256"], audience=SERVICE_AUDIENCE)
    assert payload["iss"] == SERVICE_ISSUER and payload["sub"] == "service:matching"
    assert "role" not in payload, "a service identity carries no role, admin least of all"
    assert verify_service(settings, token) == ServiceIdentity("matching")


def test_service_identity_and_forwarded_identity_are_not_interchangeable(settings: Settings) -> None:
    with pytest.raises(Unauthenticated, match="service identity"):
        verify_service(settings, mint_internal(settings, Principal(subject="admin:x", role=Role.ADMIN)))
    with pytest.raises(Unauthenticated, match="forwarded identity"):
        verify_internal(settings, mint_service(settings, "matching"))
    assert "unknown key id 'service'" in refused(settings, mint_service(settings, "matching"))


def test_service_identity_names_a_known_service(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown service"):
        mint_service(settings, "notifier")
    now = datetime.now(UTC)
    forged = jwt.encode(
        {
            "iss": SERVICE_ISSUER,
            "aud": SERVICE_AUDIENCE,
            "sub": "service:x",
            "svc": "x",
            "iat": now,
            "exp": now + timedelta(minutes=1),
        },
        INTERNAL,
        algorithm="HS256",
        headers={"kid": SERVICE_KID},
    )
    with pytest.raises(Unauthenticated, match="no known service"):
        verify_service(settings, forged)


def test_service_identity_needs_the_internal_key(settings: Settings) -> None:
    token = mint_service(settings, "events")
    with pytest.raises(Unauthenticated, match="signature is invalid"):
        verify_service(make_settings(internal=OTHER), token)
    with pytest.raises(ValueError, match="no internal key"):
        mint_service(make_settings(internal=""), "events")


def test_a_route_names_the_services_it_answers() -> None:
    with pytest.raises(ValueError, match="name the services"):
        principal_or_service()
    with pytest.raises(ValueError, match="notifier"):
        principal_or_service("notifier")


# --- FastAPI dependency ------------------------------------------------------------


@pytest.fixture
def client(settings: Settings) -> TestClient:
    app = FastAPI()
    app.state.settings = settings
    install_error_handlers(app)

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"subject": principal.subject, "role": principal.role, "actor": principal.actor_id}

    @app.get("/maybe")
    async def maybe(principal: OptionalPrincipal) -> dict[str, Any]:
        return {"subject": principal.subject if principal else None}

    @app.get("/contact")
    async def contact(
        caller: Annotated[Principal | ServiceIdentity | None, Depends(principal_or_service("matching"))],
    ) -> dict[str, Any]:
        return {"subject": caller.subject if caller else None, "service": isinstance(caller, ServiceIdentity)}

    return TestClient(app)


def test_http_without_credentials(client: TestClient) -> None:
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    body = response.json()
    assert body["code"] == "UNAUTHENTICATED"
    assert body["detail"] == "missing credentials: call through the gateway with Authorization: Bearer <token>"


def test_http_a_public_token_straight_to_a_service_is_refused(client: TestClient, settings: Settings) -> None:
    # Services used to verify public tokens themselves, skipping the gateway's revocation check.
    token = mint_token(settings, role=Role.ACTOR, actor_id="a1")
    for path in ("/me", "/maybe", "/contact"):
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, path
        assert response.json()["code"] == "UNAUTHENTICATED"
        assert "only the identity the gateway forwards" in response.json()["detail"]


def test_http_with_bad_scheme(client: TestClient, settings: Settings) -> None:
    token = mint_token(settings, role=Role.ADMIN)
    response = client.get("/me", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHENTICATED"


def test_http_with_internal_header(client: TestClient, settings: Settings) -> None:
    principal = Principal(subject="partner:p1", role=Role.PARTNER)
    response = client.get("/me", headers={PRINCIPAL_HEADER: mint_internal(settings, principal)})
    assert response.status_code == 200
    assert response.json() == {"subject": "partner:p1", "role": "partner", "actor": None}


def test_http_with_forged_internal_header(client: TestClient, settings: Settings) -> None:
    forged = mint_internal(make_settings(internal=OTHER), Principal(subject="admin:x", role=Role.ADMIN))
    bearer = mint_token(settings, role=Role.PARTNER)
    response = client.get("/me", headers={PRINCIPAL_HEADER: forged, "Authorization": f"Bearer {bearer}"})
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "UNAUTHENTICATED"
    assert "signature is invalid" in body["detail"]


def test_http_optional_principal(client: TestClient, settings: Settings) -> None:
    assert client.get("/maybe").json() == {"subject": None}
    root = mint_internal(settings, Principal(subject="root", role=Role.ADMIN))
    ok = client.get("/maybe", headers={PRINCIPAL_HEADER: root})
    assert ok.json() == {"subject": "root"}
    bad = client.get("/maybe", headers={PRINCIPAL_HEADER: "nope"})
    assert bad.status_code == 401
    assert bad.json()["code"] == "UNAUTHENTICATED"


def test_http_a_service_identity_is_accepted_only_where_a_route_names_its_service(
    client: TestClient, settings: Settings
) -> None:
    matching = {SERVICE_HEADER: mint_service(settings, "matching")}
    accepted = client.get("/contact", headers=matching)
    assert accepted.status_code == 200
    assert accepted.json() == {"subject": "service:matching", "service": True}
    for path in ("/me", "/maybe"):
        refused_here = client.get(path, headers=matching)
        assert refused_here.status_code == 403, path
        assert "service identity is accepted only by the routes that name its service" in refused_here.json()["detail"]
    other = client.get("/contact", headers={SERVICE_HEADER: mint_service(settings, "events")})
    assert other.status_code == 403 and "service 'events' may not call this route" in other.json()["detail"]
    forwarded = mint_internal(settings, Principal(subject="root", role=Role.ADMIN))
    both = client.get("/contact", headers={**matching, PRINCIPAL_HEADER: forwarded})
    assert both.status_code == 401
    assert client.get("/contact", headers={PRINCIPAL_HEADER: forwarded}).json() == {"subject": "root", "service": False}
    assert client.get("/contact").json() == {"subject": None, "service": False}
