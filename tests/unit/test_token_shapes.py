"""Bearer tokens and forwarded identities of every shape are verified or refused as unauthenticated, never a crash.

The strategies here are shared with tests/integration/test_properties.py, which sends the same shapes to the real
gateway and services.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.common.auth import (
    INTERNAL_AUDIENCE,
    INTERNAL_ISSUER,
    INTERNAL_KID,
    MAX_TOKEN_CHARS,
    Principal,
    verify_internal,
    verify_token,
)
from services.common.errors import Unauthenticated
from services.common.settings import Settings

PUBLIC_KEY = "k1-secret-0123456789abcdef0123456789-0123456789-abcdefghijklmnopqrstuvwxyz"
INTERNAL_KEY = "internal-secret-0123456789abcdef0123456789-0123456789-abcdefghijklmnopqrs"
SETTINGS = Settings(
    _env_file=None,
    jwt_keys=json.dumps({"k1": PUBLIC_KEY}),
    jwt_active_kid="k1",
    jwt_issuer="maillage",
    jwt_audience="maillage-api",
    internal_key=INTERNAL_KEY,
)
# Hypothesis' settings for these pure checks: fixed examples (the same on every run) and no example database.
SHAPES = settings(
    max_examples=400, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Line separators and control characters among ordinary text.
awkward_text = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\r", "\n", "\u2028", "\u2029", "\x85", "\x00", "\x0b", "\x1c", "\ud800", '"']),
    ),
    max_size=40,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | awkward_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(awkward_text, children, max_size=4),
    max_leaves=12,
)
claim_values = {
    "iss": st.sampled_from(["maillage", INTERNAL_ISSUER]),
    "aud": st.sampled_from(["maillage-api", INTERNAL_AUDIENCE]),
    "sub": st.just("partner:carte"),
    "role": st.sampled_from(["partner", "admin", "actor"]),
    "actor": st.just("6a0c3c36-4f55-4d5c-9d0c-1a2b3c4d5e6f"),
    "scopes": st.just(["read"]),
    "iat": st.just(0),  # replaced by now
    "exp": st.just(0),  # replaced by now + 5 min
    "jti": st.just("5c0a4f0e-7b44-4a47-9d3e-0f1e2d3c4b5a"),
    "tid": st.just("5c0a4f0e-7b44-4a47-9d3e-0f1e2d3c4b5a"),
}


@st.composite
def claim_sets(draw: st.DrawFn) -> dict[str, Any]:
    """Valid-looking claims, some of them of the wrong JSON type, some missing."""
    now = int(time.time())
    claims = {name: draw(value) for name, value in claim_values.items()}
    claims["iat"], claims["exp"] = now, now + 300
    for name in draw(st.lists(st.sampled_from(sorted(claims)), max_size=3, unique=True)):
        claims[name] = draw(json_values)
    for name in draw(st.lists(st.sampled_from(sorted(claims)), max_size=2, unique=True)):
        claims.pop(name, None)
    return claims


@st.composite
def headers(draw: st.DrawFn, public_kid: str = "k1") -> Any:
    """JOSE headers: the right ones, fields of the wrong type (kid 1, kid ["x"]), crit, extra fields, non-objects."""
    header: dict[str, Any] = {
        "alg": draw(st.sampled_from(["HS256", "none", "None", "RS256", "HS512"]) | json_values),
        "kid": draw(st.sampled_from([public_kid, INTERNAL_KID, "unknown"]) | json_values),
    }
    if draw(st.booleans()):
        header["crit"] = draw(st.just(["exp"]) | st.just(["b64"]) | json_values)
    header.update(draw(st.dictionaries(awkward_text, json_values, max_size=3)))
    for name in draw(st.lists(st.sampled_from(["alg", "kid", "typ"]), max_size=2, unique=True)):
        header.pop(name, None)
    return draw(st.just(header) | json_values)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def encoded(value: Any) -> bytes:
    """`value` as JSON (lone surrogates escaped, as a forger's encoder may), or the raw bytes given."""
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def compact(header: Any, payload: Any, key: str) -> str:
    """A compact JWS of any header and payload, signed with HS256 under `key` (so the claims are looked at)."""
    signing_input = b64(encoded(header)) + "." + b64(encoded(payload))
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


@st.composite
def tokens(
    draw: st.DrawFn, public_kid: str = "k1", public_key: str = PUBLIC_KEY, internal_key: str = INTERNAL_KEY
) -> str:
    """Signed tokens of every header and payload shape, and strings that are no token at all."""
    key = draw(st.sampled_from([public_key, internal_key, "not-the-key"]))
    header = draw(headers(public_kid) | st.binary(max_size=20))
    payload = draw(claim_sets() | json_values | st.binary(max_size=20))
    return draw(
        st.just(compact(header, payload, key))
        | awkward_text
        | st.text(st.sampled_from("AZaz09-_.=é"), max_size=60)
        | st.just("a" * (MAX_TOKEN_CHARS + 1))
        | st.just(compact({"alg": "HS256", "kid": public_kid, "pad": "x" * MAX_TOKEN_CHARS}, payload, key))
    )


def now_claims(**claims: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "maillage", "aud": "maillage-api", "sub": "s", "role": "admin", "iat": now, "exp": now + 60} | claims


NAMED_IN_THE_ISSUE = [
    compact({"alg": "HS256", "kid": 1}, now_claims(), PUBLIC_KEY),
    compact({"alg": "HS256", "kid": ["x"]}, now_claims(), PUBLIC_KEY),
    compact({"alg": "HS256", "kid": "k1", "crit": ["exp"]}, now_claims(), PUBLIC_KEY),
    compact({"alg": "HS256", "kid": "k1", "crit": "x"}, now_claims(), PUBLIC_KEY),
    compact({"alg": "HS256", "kid": "k1", "crit": ["b64"], "b64": True}, now_claims(), PUBLIC_KEY),
    compact({"alg": "HS256", "kid": INTERNAL_KID, "crit": ["exp"]}, now_claims(), INTERNAL_KEY),
    compact(["HS256"], now_claims(), PUBLIC_KEY),
    compact(b"\xff\xfe", now_claims(), PUBLIC_KEY),
    compact({"alg": "HS256", "kid": "k1"}, [1, 2], PUBLIC_KEY),
    compact({"alg": "HS256", "kid": "k1"}, b"\xff", PUBLIC_KEY),
    compact({"alg": "HS256", "kid": "k1"}, now_claims(exp="tomorrow"), PUBLIC_KEY),
    compact(b'{"alg": "HS256", "kid": "k1", "x": ' + b"[" * 2500 + b"]" * 2500 + b"}", now_claims(), PUBLIC_KEY),
    compact({"alg": "HS256", "kid": "k1", "pad": "x" * 3_000_000}, now_claims(), PUBLIC_KEY),
    "\ud800.e30.e30",
    "é" * 50,
]


def outcome(verify: Any, token: str) -> Principal | Unauthenticated:
    try:
        principal = verify(SETTINGS, token)
    except Unauthenticated as refused:
        assert refused.status == 401 and refused.code == "UNAUTHENTICATED"
        assert len(refused.detail) < 2 * MAX_TOKEN_CHARS, "the refusal does not echo a huge token back"
        return refused
    assert isinstance(principal, Principal)
    return principal


@pytest.mark.parametrize("token", NAMED_IN_THE_ISSUE, ids=range(len(NAMED_IN_THE_ISSUE)))
def test_each_shape_named_in_the_issue_is_unauthenticated(token: str) -> None:
    assert isinstance(outcome(verify_token, token), Unauthenticated)
    assert isinstance(outcome(verify_internal, token), Unauthenticated)


@SHAPES
@given(token=tokens())
@example(token=compact({"alg": "HS256", "kid": 1}, now_claims(), PUBLIC_KEY))
def test_a_public_token_of_any_shape_is_a_principal_or_unauthenticated(token: str) -> None:
    outcome(verify_token, token)


@SHAPES
@given(token=tokens())
@example(token=compact({"alg": "HS256", "kid": INTERNAL_KID, "crit": ["exp"]}, now_claims(), INTERNAL_KEY))
def test_a_forwarded_identity_of_any_shape_is_a_principal_or_unauthenticated(token: str) -> None:
    outcome(verify_internal, token)


def test_a_token_with_a_critical_header_is_refused_even_when_pyjwt_understands_it() -> None:
    token = compact({"alg": "HS256", "kid": "k1", "crit": ["b64"], "b64": True}, now_claims(), PUBLIC_KEY)
    refused = outcome(verify_token, token)
    assert isinstance(refused, Unauthenticated) and "critical" in refused.detail


def test_a_signed_token_expiring_after_the_largest_float_is_verified_without_overflow() -> None:
    token = compact({"alg": "HS256", "kid": "k1"}, now_claims(exp=10**400), PUBLIC_KEY)
    assert isinstance(outcome(verify_token, token), Principal)
    assert isinstance(outcome(verify_token, token), Principal), "and again, from the cache of verified tokens"
