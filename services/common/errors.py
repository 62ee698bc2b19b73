"""One error hierarchy for every service, mapped once to RFC 9457 problem responses."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.contracts.errors import ErrorCode

logger = logging.getLogger("maillage.errors")

PROBLEM_TYPE_BASE = "https://maillage.org/problems/"


class MaillageError(Exception):
    """A failure a caller can cause and understand; carries its HTTP status and GraphQL code."""

    status: int = 400
    code: ErrorCode = ErrorCode.BAD_USER_INPUT
    title: str = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code.lower().replace("_", "-"),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        if self.field:
            body["errors"] = [{"field": self.field, "rule": self.extra.get("rule", "invalid"), "message": self.detail}]
        body.update({k: v for k, v in self.extra.items() if k != "rule"})
        return body


class ValidationFailed(MaillageError):
    status, code, title = 422, ErrorCode.BAD_USER_INPUT, "Invalid input"


class Unauthenticated(MaillageError):
    status, code, title = 401, ErrorCode.UNAUTHENTICATED, "Authentication required"


class Forbidden(MaillageError):
    status, code, title = 403, ErrorCode.FORBIDDEN, "Not allowed"


class NotFound(MaillageError):
    status, code, title = 404, ErrorCode.NOT_FOUND, "Not found"


class Conflict(MaillageError):
    status, code, title = 409, ErrorCode.CONFLICT, "Conflict"


class PreconditionRequired(MaillageError):
    status, code, title = 428, ErrorCode.BAD_USER_INPUT, "Precondition required"


class Unavailable(MaillageError):
    status, code, title = 503, ErrorCode.UNAVAILABLE, "Temporarily unavailable"


def parse_id(value: str, what: str) -> uuid.UUID:
    """A path id; one that is not a UUID names nothing, hence 404."""
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound(f"no {what} {value}") from exc


def _error_field(err: dict[str, Any]) -> str:
    """Where a validation error is, without FastAPI's `body`: a rule across fields names its field in its context
    (`services.common.rules.cross_field_error`)."""
    parts = [str(part) for part in err.get("loc", ()) if part != "body"]
    ctx = err.get("ctx")
    if isinstance(ctx, dict) and isinstance(ctx.get("field"), str):
        parts.append(ctx["field"])
    return ".".join(parts)


def problem_response(
    error: MaillageError, instance: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error as its problem response, for a route that answers it itself (a proxy, with `Retry-After`)."""
    return _problem_response(error.problem(instance), headers)


def _problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        body,
        status_code=int(body["status"]),
        media_type="application/problem+json",
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to a problem body; unexpected ones are logged once and stay generic."""

    @app.exception_handler(MaillageError)
    async def _maillage_error(request: Request, exc: MaillageError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _problem_response(exc.problem(request.url.path), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": _error_field(err),
                "rule": err.get("type", "invalid"),
                "message": str(err.get("msg", "invalid value")).removeprefix("Value error, "),
            }
            for err in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "message": "invalid input"}
        return _problem_response(
            {
                "type": PROBLEM_TYPE_BASE + "bad-user-input",
                "title": "Invalid input",
                "status": 422,
                "detail": f"{first['field']}: {first['message']}" if first["field"] else first["message"],
                "code": ErrorCode.BAD_USER_INPUT,
                "instance": request.url.path,
                "errors": errors,
            }
        )

    @app.exception_handler(asyncpg.CharacterNotInRepertoireError)
    @app.exception_handler(asyncpg.UntranslatableCharacterError)
    async def _unstorable_text(request: Request, exc: Exception) -> JSONResponse:
        # PostgreSQL text cannot hold NUL (U+0000); the statement failed, its transaction rolled back.
        return _problem_response(
            ValidationFailed(
                "a text field holds a character that cannot be stored (NUL, U+0000)",
                field="query" if request.method == "GET" else "body",
                rule="text",
            ).problem(request.url.path)
        )

    @app.exception_handler(asyncpg.DataError)
    async def _unstorable_value(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        # A value PostgreSQL cannot take (SQLSTATE class 22, or refused while encoding it), e.g. a date that falls
        # before year 1 once in UTC; the statement failed, its transaction rolled back.
        reason = str(exc).rsplit("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        return _problem_response(
            ValidationFailed(
                f"a value cannot be stored or compared: {reason}",
                field="query" if request.method == "GET" else "body",
                rule="range",
            ).problem(request.url.path)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem_response(
            {
                "type": "about:blank",
                "title": str(exc.detail),
                "status": exc.status_code,
                "detail": str(exc.detail),
                "code": ErrorCode.for_status(exc.status_code),
                "instance": request.url.path,
            }
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return _problem_response(
            {
                "type": "about:blank",
                "title": "Internal error",
                "status": 500,
                "detail": "An unexpected error occurred; it has been logged.",
                "code": ErrorCode.INTERNAL_SERVER_ERROR,
                "instance": request.url.path,
            }
        )
