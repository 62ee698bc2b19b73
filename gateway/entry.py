"""The one way into the schema over HTTP: who calls (revocation checked), at what rate, within what time.

`/graphql` and the web console both come in here, so a page of the console is refused exactly where a partner's
request would be: a revoked credential, an unreadable credential store, a caller over its rate. The cost, depth
and token limits are the schema's own extensions and apply to every execution.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from strawberry.schema import BaseSchema
from strawberry.types import ExecutionResult

from gateway.auth import Caller, authenticate
from gateway.context import Gateway, GatewayContext
from gateway.guard import Refusal, Refused, over_rate, timed_out
from services.common.errors import MaillageError, Unavailable
from services.contracts.errors import ErrorCode


async def admit(gateway: Gateway, authorization: str | None, client_address: str | None) -> Caller | None:
    """The caller of one HTTP operation (None: anonymous), or `Refused` with the answer it gets."""
    try:
        caller = await authenticate(gateway.settings, gateway.pool, authorization, gateway.credentials)
    except Unavailable as exc:  # the credential could not be checked: say so, and when to come back
        raise Refused(Refusal(503, exc.detail, ErrorCode.UNAVAILABLE, headers={"Retry-After": "5"})) from None
    except MaillageError as exc:
        raise Refused(
            Refusal(401, exc.detail, ErrorCode.UNAUTHENTICATED, headers={"WWW-Authenticate": "Bearer"})
        ) from None
    if too_fast := over_rate(gateway.limiter, caller, client_address):
        raise Refused(too_fast)
    return caller


async def execute(
    gateway: Gateway,
    schema: BaseSchema,
    caller: Caller | None,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    request: Any = None,
) -> ExecutionResult:
    """One operation of an admitted caller, under the gateway's time limit (`Refused` when it runs out)."""
    context = GatewayContext(gateway, caller)
    context.request = request
    try:
        async with asyncio.timeout(gateway.settings.gateway_request_timeout_s):
            return await schema.execute(query, variable_values=variables, context_value=context)
    except TimeoutError:
        raise Refused(timed_out(gateway.settings)) from None


async def subscribe(
    gateway: Gateway,
    schema: BaseSchema,
    caller: Caller | None,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    request: Any = None,
) -> AsyncIterator[ExecutionResult]:
    """One subscription of an admitted caller, result by result (a refusal before the first one is one result
    with errors). Unlike `execute` it has no time limit: it lasts as long as whoever reads it (the console's live
    pages) wants, and they re-check the caller's session themselves."""
    context = GatewayContext(gateway, caller)
    context.request = request
    results = await schema.subscribe(query, variable_values=variables, context_value=context)
    if isinstance(results, ExecutionResult):
        yield results
        return
    try:
        async for result in results:
            yield result
    finally:
        await results.aclose()
