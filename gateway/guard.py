"""The guard every GraphQL operation passes, over HTTP and over the WebSocket alike: its size, its nesting, its
caller's rate and its time limit, each refusal a GraphQL error with its `extensions.code`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import orjson
from graphql import GraphQLFormattedError
from starlette.responses import JSONResponse

from gateway.auth import Caller, RateLimiter, rate_key
from services.common.settings import Settings
from services.contracts.errors import ErrorCode


@dataclass(frozen=True)
class Refusal:
    """An operation refused before it runs (or stopped): the HTTP answer, or the WebSocket `error`, it gets."""

    status: int
    message: str
    code: ErrorCode
    extensions: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def error(self) -> GraphQLFormattedError:
        """The refusal as one GraphQL error."""
        return {"message": self.message, "extensions": {"code": self.code, **self.extensions}}

    def response(self) -> JSONResponse:
        return JSONResponse({"errors": [self.error()]}, self.status, headers=self.headers or None)


class Refused(Exception):
    """A refusal found inside strawberry (reading or parsing an HTTP body), answered before any response starts."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


def over_size(settings: Settings, size: int, what: str = "request body") -> Refusal | None:
    """An HTTP body, or a WebSocket message, over `gateway_max_body_bytes`."""
    limit = settings.gateway_max_body_bytes
    if size <= limit:
        return None
    return Refusal(413, f"{what} over {limit} bytes", ErrorCode.BAD_USER_INPUT, {"rule": "max_body_bytes"})


def over_rate(limiter: RateLimiter, caller: Caller | None, client_address: str | None) -> Refusal | None:
    """One more operation of this caller (anonymous: of this address) over its rate; admins are not limited."""
    if caller is not None and caller.principal.is_admin:
        return None
    wait = limiter.retry_after(rate_key(caller, client_address), caller.rate_limit_per_minute if caller else None)
    if wait is None:
        return None
    return Refusal(
        429,
        f"rate limit reached: retry in {wait:.1f} s",
        ErrorCode.RATE_LIMITED,
        {"retryAfter": wait},
        {"Retry-After": str(max(1, round(wait)))},
    )


def timed_out(settings: Settings) -> Refusal:
    """An operation that ran over `gateway_request_timeout_s`, and was stopped."""
    return Refusal(
        504, f"the request took over {settings.gateway_request_timeout_s:g} s and was stopped", ErrorCode.UNAVAILABLE
    )


def nested_too_deeply(settings: Settings, where: str) -> Refusal:
    limit = settings.gateway_max_input_depth
    return Refusal(
        400,
        f"{where}: arrays and objects nested deeper than {limit} levels",
        ErrorCode.BAD_USER_INPUT,
        {"field": where, "rule": "depth"},
    )


def over_depth(settings: Settings, request: Mapping[str, Any]) -> Refusal | None:
    """A request's (or a subscribe message's payload's) variables or extensions nested over `gateway_max_input_depth`.

    Checked before graphql-core sees them: its coercion, and anything else that walks a value, recurses.
    """
    limit = settings.gateway_max_input_depth
    for where in ("variables", "extensions"):
        if nesting_depth(request.get(where), limit) > limit:
            return nested_too_deeply(settings, where)
    return None


def nesting_depth(value: object, limit: int) -> int:
    """How deep arrays and objects nest in a parsed JSON value (a scalar: 0; `{}`: 1), counted without recursion and
    no further than `limit + 1`."""
    deepest = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


class NestedTooDeeply(ValueError):
    """JSON text the parser refused that nests deeper than `gateway_max_input_depth`."""


def parse_json_text(text: str | bytes, max_depth: int) -> Any:
    """JSON text parsed by orjson, which stops at 1024 levels where the standard library's parser recurses until
    Python's recursion limit; raises `NestedTooDeeply` when that is why the text was refused, else `ValueError`."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if text_nesting_depth(text) > max_depth:
            raise NestedTooDeeply(f"nested deeper than {max_depth} levels") from None
        raise


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def text_nesting_depth(text: str | bytes) -> int:
    """How deep brackets nest in JSON text, strings left out: why a text the parser refused was refused, read only
    then (the parser stops at 1024 levels; what is under that is measured on the parsed value)."""
    raw = text.encode() if isinstance(text, str) else text
    brackets = _JSON_STRING.sub(b"", raw).translate(None, delete=bytes(set(range(256)) - set(_BRACKET_STEP)))
    return max(accumulate(_BRACKET_STEP[byte] for byte in brackets), default=0)
