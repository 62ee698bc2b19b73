"""Rules the services' models share: an error for a rule across fields that names the field to change, and
instants that can be stored (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

# An e-mail address as every store and form accepts it: something, an @, a domain with a dot; at most RFC 5321's
# longest path. Deliverability is the mail server's call, not a pattern's.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
EMAIL_MAX_LENGTH = 320


def cross_field_error(field: str, rule: str, message: str) -> PydanticCustomError:
    """Raise it from a model validator: the problem body names `field` (below the model's own place) and `rule`.

    Pydantic places a model validator's error at the model itself (for a request body: nowhere); its context
    carries the field the caller should change.
    """
    return PydanticCustomError(rule, message, {"field": field})


OUT_OF_RANGE = "out of range: the instant must fall between the years 1 and 9999 in UTC"


def storable_instant(value: datetime) -> datetime:
    """`value`, if it exists in UTC (PostgreSQL stores instants in UTC; 9999-12-31T23:00-05:00 has no UTC)."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise PydanticCustomError("range", OUT_OF_RANGE) from None
    return value


Instant = Annotated[datetime, AfterValidator(storable_instant)]
