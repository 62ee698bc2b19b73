"""The creating mutations' `idempotencyKey`: checked here, forwarded to the service that keeps it with its answer.

The service keeps the key in its own database, in the creating transaction and scoped to the caller's forwarded
identity (services/common/idempotency.py): a retry after a timeout gets the first answer, whether or not the
first call had committed when the caller gave up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import NewType, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.types.scalar import ScalarDefinition

from gateway.errors import bad_input
from services.common.idempotency import KEY_HEADER, key_problem

ARGUMENT = "idempotencyKey"

T = TypeVar("T")

# A scalar rather than a described String: its description shows in GraphiQL and the SDL stays one line a field.
IdempotencyKeyValue = NewType("IdempotencyKeyValue", str)
IdempotencyKey = IdempotencyKeyValue | None
SCALARS: dict[object, ScalarDefinition] = {
    IdempotencyKeyValue: strawberry.scalar(
        name="IdempotencyKey",
        description="A key of yours for one creation (a UUID is a good one; 1 to 255 visible ASCII characters). "
        "Sent again with the same input, the mutation answers what it first answered (the same id) instead of "
        "creating again; the same key with another input is a CONFLICT. Kept MAILLAGE_IDEMPOTENCY_RETENTION_HOURS "
        "(24 hours by default).",
        serialize=str,
        parse_value=str,  # checked by `create`, which names the argument and the rule
    )
}


async def create(key: str | None, send: Callable[[str | None], Awaitable[T]]) -> T:
    """A creation sent by `send` (a typed client's method given the key), once the caller's key, if any, is checked."""
    if key is not None and (problem := key_problem(key)) is not None:
        raise bad_input(f"{ARGUMENT}: {problem}", field=ARGUMENT, rule="format")
    try:
        return await send(key)
    except GraphQLError as exc:
        if exc.extensions is not None and exc.extensions.get("field") == KEY_HEADER:
            exc.extensions["field"] = ARGUMENT  # the service names its header; the caller knows the argument
        raise
