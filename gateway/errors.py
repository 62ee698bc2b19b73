"""GraphQL errors with `extensions.code`: the services' problem bodies mapped once, and unexpected ones masked."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
from graphql import FieldNode, GraphQLError
from strawberry.extensions import MaskErrors

from services.common.errors import MaillageError
from services.contracts.errors import ErrorCode

logger = logging.getLogger("maillage.gateway")

INPUT_ARGUMENT = "input"  # the contract's name for the argument a mutation's body is built from


def error(message: str, code: ErrorCode, **extensions: Any) -> GraphQLError:
    """A client-facing GraphQL error with its code."""
    return GraphQLError(message, extensions={"code": code, **{k: v for k, v in extensions.items() if v is not None}})


def bad_input(message: str, field: str, rule: str = "invalid") -> GraphQLError:
    return error(message, ErrorCode.BAD_USER_INPUT, field=field, rule=rule)


def from_error(exc: MaillageError) -> GraphQLError:
    """A refusal decided in the gateway with the services' errors (`services.common`) as a GraphQL error."""
    return error(exc.detail, exc.code, field=exc.field, rule=exc.extra.get("rule"))


def camel_field(path: str) -> str:
    """A service's field path (`perimeter.radius_km`, `activities.0.area`) in the schema's camelCase."""
    path = path.removeprefix("body.").removeprefix("query.")
    return ".".join(re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), part) for part in path.split("."))


def from_response(service: str, response: httpx.Response) -> GraphQLError:
    """A service's refusal (an RFC 9457 problem body) as a GraphQL error naming the field and the rule."""
    status = response.status_code
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    if status >= 500:
        if status != 503:
            logger.error("%s answered %s: %s", service, status, problem.get("detail") or response.text[:500])
        return error(f"the {service} service failed to answer; try again", ErrorCode.UNAVAILABLE, service=service)
    try:
        code = ErrorCode(str(problem.get("code")))
    except ValueError:  # no code, or not one of the contract's
        code = ErrorCode.for_status(status)
    extensions: dict[str, Any] = {}
    errors = problem.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        extensions["field"] = camel_field(str(errors[0].get("field", "")))
        extensions["rule"] = errors[0].get("rule")
        if len(errors) > 1:
            extensions["errors"] = [
                {"field": camel_field(str(e.get("field", ""))), "rule": e.get("rule"), "message": e.get("message")}
                for e in errors
                if isinstance(e, dict)
            ]
    message = str(problem.get("detail") or problem.get("title") or f"{service} answered {status}")
    return error(message, code, **extensions)


def unavailable(service: str, why: str) -> GraphQLError:
    return error(
        f"the {service} service is unavailable ({why}); the rest of the answer is complete",
        ErrorCode.UNAVAILABLE,
        service=service,
    )


class PublicErrors(MaskErrors):
    """Every error leaves with a code: unexpected ones are logged once and masked, client ones get BAD_USER_INPUT."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_unexpected, error_message="Unexpected error; it has been logged.")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        logger.error("unexpected error at %s", error.path, exc_info=error.original_error)
        masked = super().anonymise_error(error)
        masked.extensions = {"code": ErrorCode.INTERNAL_SERVER_ERROR}
        return masked

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed = super()._process_errors(errors)
        for item in processed:
            if not (item.extensions or {}).get("code"):
                # Syntax, validation and variable errors: the document or the variables are at fault.
                item.extensions = {**(item.extensions or {}), "code": ErrorCode.BAD_USER_INPUT}
            elif item.extensions and item.extensions["code"] == ErrorCode.BAD_USER_INPUT:
                item.extensions = under_input(item, item.extensions)
        return processed


def under_input(error: GraphQLError, extensions: dict[str, Any]) -> dict[str, Any]:
    """The error's fields as paths in what the caller sent: a service names the fields of the body the gateway
    built from a field's `input` argument (`deadline`), the caller wrote `input.deadline`.

    Only for a root field (a mutation, a query) that was given an `input` argument; a field that already names
    one of its arguments (`first`, `input`) stays as it is.
    """
    node = error.nodes[0] if error.nodes else None
    if not isinstance(node, FieldNode) or error.path is None or len(error.path) != 1:
        return extensions
    arguments = {argument.name.value for argument in node.arguments or ()}
    if INPUT_ARGUMENT not in arguments:
        return extensions

    def path(field: object) -> object:
        if not isinstance(field, str):
            return field
        if field in ("", "body"):  # the whole body
            return INPUT_ARGUMENT
        return field if field.split(".")[0] in arguments else f"{INPUT_ARGUMENT}.{field}"

    extensions = {**extensions, "field": path(extensions.get("field", ""))}
    if isinstance(extensions.get("errors"), list):
        extensions["errors"] = [
            {**item, "field": path(item.get("field", ""))} if isinstance(item, dict) else item
            for item in extensions["errors"]
        ]
    return extensions


def _unexpected(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)
