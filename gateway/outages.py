"""What went wrong when a dependency of the gateway does not answer, said as it happened (refused is not timed out)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import httpx


@dataclass(frozen=True)
class Outage:
    """Why a call failed, in a few words for the caller's error message."""

    reason: str
    timed_out: bool = False


def describe_outage(exc: BaseException) -> Outage:
    """The root cause behind a failed call to a service (httpx over aiohttp) or to PostgreSQL (asyncpg).

    The transport's own exception type cannot be trusted: httpx_aiohttp maps a refused connection to
    `httpx.ConnectTimeout`, so the causes it chains are read instead.
    """
    causes = list(_causes(exc))

    def found(*kinds: type[BaseException]) -> bool:
        return any(isinstance(cause, kinds) for cause in causes)

    if found(ConnectionRefusedError):
        return Outage("connection refused")
    if found(socket.gaierror):
        return Outage("host name not found")
    if found(asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError):
        return Outage("the database is starting up or shutting down")
    if found(
        ConnectionResetError,
        ConnectionAbortedError,
        BrokenPipeError,
        aiohttp.ServerDisconnectedError,
        asyncpg.ConnectionDoesNotExistError,
        httpx.RemoteProtocolError,
    ):
        return Outage("connection closed before an answer")
    # Behind aiohttp, httpx's exception type says nothing (every connection error becomes ConnectTimeout).
    behind_aiohttp = found(aiohttp.ClientError)
    if found(aiohttp.ConnectionTimeoutError) or (not behind_aiohttp and found(httpx.ConnectTimeout, httpx.PoolTimeout)):
        return Outage("timed out connecting", timed_out=True)
    if found(TimeoutError) or (not behind_aiohttp and found(httpx.TimeoutException)):
        return Outage("timed out waiting for the answer", timed_out=True)
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return Outage(f"connection failed: {cause.strerror.lower()}")
    for cause in causes:
        if isinstance(cause, asyncpg.PostgresError):
            return Outage(f"PostgreSQL error {cause.sqlstate}")
    return Outage("unreachable")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        cause = pending.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        # aiohttp keeps the socket's error beside the chain, not always in it.
        pending += [cause.__cause__, cause.__context__, getattr(cause, "os_error", None)]
