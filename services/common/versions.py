"""Optimistic concurrency over HTTP, written once: the ETag a version is sent as, the version an If-Match names, and
the conflict when the stored version moved on."""

from __future__ import annotations

from services.common.errors import Conflict, PreconditionRequired, ValidationFailed


def etag(version: int) -> str:
    """The ETag of a record at `version` (a strong validator: the version changes with every edit)."""
    return f'"{version}"'


def parse_if_match(value: str | None, what: str, read_path: str) -> int:
    """The version an If-Match header names (428 when missing, 422 when not a version); a weak `W/"3"` is read too."""
    if value is None:
        raise PreconditionRequired(
            f"send If-Match with the version you edited (the ETag of GET {read_path})",
            field="If-Match",
            rule="required",
        )
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError as exc:
        raise ValidationFailed(
            f'If-Match must be the {what}\'s version, e.g. "3"', field="If-Match", rule="format"
        ) from exc


def stale_version(what: str, ident: object, expected: int, current: int, *, field: str = "If-Match") -> Conflict:
    """The conflict of an edit made on `expected` when the record is at `current`: the caller reloads and edits again.

    `field` is where the caller named the version: the If-Match header over HTTP, an input field over GraphQL.
    """
    return Conflict(
        f"{what} {ident} is at version {current}, not {expected}: reload it and apply your change again",
        field=field,
        rule="stale",
        current_version=current,
    )
