"""The error codes Maillage publishes (the README's `extensions.code` list): one vocabulary for the services' problem
bodies, the gateway's GraphQL errors and the gateway's other routes."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """A refusal's code; a StrEnum, so that JSON carries the same strings it always did."""

    BAD_USER_INPUT = "BAD_USER_INPUT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    UNAVAILABLE = "UNAVAILABLE"
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"

    @classmethod
    def for_status(cls, status: int) -> ErrorCode:
        """The code of an HTTP answer that carries none of its own (a framework's refusal, a body without `code`)."""
        if status in _BY_STATUS:
            return _BY_STATUS[status]
        if status >= 500:
            return cls.INTERNAL_SERVER_ERROR
        return cls.BAD_USER_INPUT  # 400, 405, 413, 422, 428…: the request is at fault


_BY_STATUS = {
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
    412: ErrorCode.CONFLICT,  # a precondition (If-Match) that no longer holds: the same as a stale version
    429: ErrorCode.RATE_LIMITED,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.UNAVAILABLE,
}
