"""The guard's pure rules: nesting measured without recursion, JSON refused for its depth, sizes, rates, operation
types, and the credential cache telling its listeners of each change."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from graphql import GraphQLError, OperationType

from gateway.auth import Caller, CredentialCache, CredentialState, RateLimiter
from gateway.guard import (
    NestedTooDeeply,
    nesting_depth,
    over_depth,
    over_rate,
    over_size,
    parse_json_text,
    text_nesting_depth,
)
from gateway.websocket import operation_type
from services.common.auth import Principal, Role
from services.common.settings import Settings

SETTINGS = Settings(_env_file=None)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), ({}, 1), ([], 1), ({"a": [1, {"b": 2}]}, 3), ([[1], [[2]], 3], 3), ({"a": {"b": {}}}, 3)],
)
def test_nesting_depth_counts_arrays_and_objects(value: object, depth: int) -> None:
    assert nesting_depth(value, limit=100) == depth


def test_nesting_depth_goes_no_deeper_than_its_limit_and_never_recurses() -> None:
    assert nesting_depth(nested(100_000), limit=16) == 17  # far beyond Python's recursion limit


def test_text_nesting_depth_leaves_strings_out() -> None:
    assert text_nesting_depth('{"a": ["[[[{", {"b": "\\"]]"}]}') == 3
    assert text_nesting_depth(b"[" * 5000) == 5000
    assert text_nesting_depth("") == 0


def test_json_too_deep_for_the_parser_is_told_from_json_that_is_not_json() -> None:
    assert parse_json_text('{"a": [1]}', 16) == {"a": [1]}
    with pytest.raises(NestedTooDeeply):
        parse_json_text("[" * 3000 + "]" * 3000, 16)
    with pytest.raises(ValueError) as refused:
        parse_json_text('{"a": ', 16)
    assert not isinstance(refused.value, NestedTooDeeply)


def test_variables_or_extensions_over_the_depth_are_bad_input_naming_the_field() -> None:
    limit = SETTINGS.gateway_max_input_depth
    assert over_depth(SETTINGS, {"variables": {"x": nested(limit - 1)}}) is None
    refusal = over_depth(SETTINGS, {"variables": {"x": nested(limit)}})
    assert refusal is not None and refusal.status == 400
    assert refusal.error()["extensions"] == {"code": "BAD_USER_INPUT", "field": "variables", "rule": "depth"}
    deep_extensions = over_depth(SETTINGS, {"variables": None, "extensions": {"x": nested(limit)}})
    assert deep_extensions is not None and deep_extensions.extensions["field"] == "extensions"


def test_sizes_over_the_body_limit_are_refused() -> None:
    limit = SETTINGS.gateway_max_body_bytes
    assert over_size(SETTINGS, limit) is None
    refusal = over_size(SETTINGS, limit + 1)
    assert refusal is not None and refusal.status == 413 and refusal.code == "BAD_USER_INPUT"


def test_the_rate_is_per_caller_and_admins_are_not_limited() -> None:
    limiter = RateLimiter(per_minute=60, burst=1)
    partner = Caller(Principal(subject="partner:a", role=Role.PARTNER, token_id="a"))
    assert over_rate(limiter, partner, None) is None
    refusal = over_rate(limiter, partner, None)
    assert refusal is not None and refusal.code == "RATE_LIMITED" and refusal.extensions["retryAfter"] > 0
    assert refusal.headers["Retry-After"] == "1"
    assert over_rate(limiter, None, "192.0.2.1") is None, "anonymous callers are counted by address"
    admin = Caller(Principal(subject="admin:a", role=Role.ADMIN))
    assert all(over_rate(limiter, admin, None) is None for _ in range(5))


def test_the_operation_type_is_read_from_the_operation_run() -> None:
    document = "query Q { themes { code } } subscription S { matchFound { id } }"
    assert operation_type(document, "S", 2000) is OperationType.SUBSCRIPTION
    assert operation_type(document, "Q", 2000) is OperationType.QUERY
    assert operation_type("subscription { matchFound { id } }", None, 2000) is OperationType.SUBSCRIPTION
    assert operation_type(document, "R", 2000) is None  # strawberry answers that there is no such operation
    with pytest.raises(GraphQLError, match="Syntax Error"):
        operation_type("{ themes { code ", None, 2000)
    with pytest.raises(GraphQLError, match="tokens"):
        operation_type("{ themes { " + "code " * 200 + "} }", None, 100)


def test_the_credential_cache_tells_its_listeners_of_each_change_after_applying_it() -> None:
    cache = CredentialCache()
    cache.heard_until = time.monotonic() + 60
    credential = uuid.uuid4()
    cache.put(credential, CredentialState(revoked=False, rate_limit_per_minute=None), cache.generation)
    heard: list[tuple[uuid.UUID | None, bool]] = []

    def listener(changed: uuid.UUID | None) -> None:
        heard.append((changed, cache.get(credential) is None))

    cache.listeners.append(listener)
    cache._heard(None, 0, "maillage_credentials", str(credential))
    cache._heard(None, 0, "maillage_credentials", "not an id")
    assert heard == [(credential, True), (None, True)]
