"""The gateway forwards the caller as an identity the services verify, plus the correlation id; says why a call failed.

Its typed clients are the only gateway code that writes a service's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from graphql import GraphQLError
from prometheus_client import REGISTRY

from gateway.clients import ServiceClients
from services.common.auth import PRINCIPAL_HEADER, Principal, Role, verify_internal
from services.common.embedded import free_port
from services.common.idempotency import KEY_HEADER
from services.common.observability import CORRELATION_HEADER, correlation_id
from services.common.settings import Settings


async def test_a_call_carries_the_signed_principal_and_the_correlation_id(unit_settings: Settings) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    clients = ServiceClients(unit_settings, transport=httpx.MockTransport(answer))
    caller = Principal(subject="collectivity:besancon", role=Role.COLLECTIVITY, actor_id="a-25056")
    token = correlation_id.set("corr-1")
    try:
        response = await clients.request("directory", "GET", "/v1/me", principal=caller)
    finally:
        correlation_id.reset(token)
        await clients.aclose()
    assert response.json() == {"ok": True}
    [request] = seen
    assert str(request.url) == unit_settings.url_for("directory") + "/v1/me"
    assert verify_internal(unit_settings, request.headers[PRINCIPAL_HEADER]).actor_id == "a-25056"
    assert request.headers[CORRELATION_HEADER] == "corr-1"


async def test_an_anonymous_call_carries_no_identity(unit_settings: Settings) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    clients = ServiceClients(unit_settings, transport=httpx.MockTransport(answer))
    await clients.request("events", "GET", "/v1/events", principal=None)
    await clients.aclose()
    assert PRINCIPAL_HEADER not in seen[0].headers


# --- a service that does not answer: the error says what happened -------------------------------------------


async def unavailable_message(settings: Settings, url: str) -> str:
    clients = ServiceClients(settings.model_copy(update={"directory_url": url, "gateway_upstream_timeout_s": 0.3}))
    try:
        with pytest.raises(GraphQLError) as caught:
            await clients.call("directory", "GET", "/v1/actors", principal=None)
    finally:
        await clients.aclose()
    assert caught.value.extensions == {"code": "UNAVAILABLE", "service": "directory"}
    return caught.value.message


def upstream_calls(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "maillage_gateway_upstream_requests_total", {"service": "directory", "outcome": outcome}
        )
        or 0.0
    )


async def test_a_refused_connection_is_said_to_be_refused_not_timed_out(unit_settings: Settings) -> None:
    before = upstream_calls("unreachable"), upstream_calls("timeout")
    message = await unavailable_message(unit_settings, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    assert message == "the directory service is unavailable (connection refused); the rest of the answer is complete"
    assert (upstream_calls("unreachable"), upstream_calls("timeout")) == (before[0] + 1, before[1])


@contextlib.asynccontextmanager
async def tcp_server(
    on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def test_a_service_that_never_answers_is_said_to_have_timed_out(unit_settings: Settings) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    before = upstream_calls("timeout")
    async with tcp_server(silent) as url:
        message = await unavailable_message(unit_settings, url)
    assert "(timed out waiting for the answer)" in message
    assert upstream_calls("timeout") == before + 1


async def test_a_service_that_hangs_up_is_said_to_have_closed_the_connection(unit_settings: Settings) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with tcp_server(hang_up) as url:
        message = await unavailable_message(unit_settings, url)
    assert "(connection closed before an answer)" in message


# --- the typed clients: methods, not paths, everywhere else in the gateway -----------------------------------

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
# The gateway's own public routes keep the events service's paths (gateway/links.py): declared, not called.
OWN_ROUTE = re.compile(r"^\s*@app\.(get|post|put|patch|delete)\(")


def test_no_gateway_module_but_the_clients_writes_a_service_path() -> None:
    offenders = [
        f"{path.relative_to(GATEWAY.parent)}:{number}: {line.strip()}"
        for path in sorted(GATEWAY.rglob("*.py"))
        if GATEWAY / "clients" not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "/v1/" in line and not OWN_ROUTE.match(line)
    ]
    assert offenders == [], "call a method of gateway/clients/ instead:\n" + "\n".join(offenders)
    assert any("/v1/" in path.read_text() for path in (GATEWAY / "clients").glob("*.py"))  # the check looks


async def test_a_typed_call_sends_its_operation_and_the_idempotency_key(unit_settings: Settings) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": "n-1"})

    clients = ServiceClients(unit_settings, transport=httpx.MockTransport(answer))
    caller = Principal(subject="collectivity:besancon", role=Role.COLLECTIVITY, actor_id="a-25056")
    try:
        created = await clients.matching.publish_need({"title": "Local"}, caller, idempotency_key="k-1")
        await clients.matching.publish_need({"title": "Local"}, caller)
    finally:
        await clients.aclose()
    assert created == {"id": "n-1"}
    keyed, plain = seen
    assert (keyed.method, str(keyed.url)) == ("POST", unit_settings.url_for("matching") + "/v1/needs")
    assert keyed.headers[KEY_HEADER] == "k-1" and KEY_HEADER not in plain.headers
    assert keyed.content == b'{"title":"Local"}'
    assert verify_internal(unit_settings, keyed.headers[PRINCIPAL_HEADER]).actor_id == "a-25056"


async def test_a_search_sends_only_the_criteria_given(unit_settings: Settings) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"edges": []})

    clients = ServiceClients(unit_settings, transport=httpx.MockTransport(answer))
    try:
        await clients.directory.search_actors(
            None, first=5, themes=["reemploi"], kinds=[], near=(45.76, 4.83, 30.0), in_qpv=False, with_total=True
        )
        await clients.events.search_events(None, first=3, starts_after="2030-01-01T00:00:00+00:00")
    finally:
        await clients.aclose()
    actors, events = seen
    assert actors.url.path == "/v1/actors"
    assert list(actors.url.params.multi_items()) == [
        ("first", "5"),
        ("themes", "reemploi"),
        ("lat", "45.76"),
        ("lon", "4.83"),
        ("radius_km", "30.0"),
        ("in_qpv", "false"),
        ("with_total", "true"),
    ]
    assert list(events.url.params.multi_items()) == [("first", "3"), ("from", "2030-01-01T00:00:00+00:00")]


async def test_a_service_refusal_is_a_graphql_error_with_its_code(unit_settings: Settings) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"status": 404, "code": "NOT_FOUND", "detail": "no actor a-1"})

    clients = ServiceClients(unit_settings, transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(GraphQLError) as caught:
            await clients.directory.archive_actor("a-1", Principal(subject="admin", role=Role.ADMIN))
    finally:
        await clients.aclose()
    assert (caught.value.message, caught.value.extensions) == ("no actor a-1", {"code": "NOT_FOUND"})


async def test_a_partial_update_is_the_services_patch_with_the_version_edited(unit_settings: Settings) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "a-1", "version": 4})

    clients = ServiceClients(unit_settings, transport=httpx.MockTransport(answer))
    admin = Principal(subject="admin", role=Role.ADMIN)
    try:
        await clients.directory.patch_actor("a-1", {"description": "Atelier"}, admin, version=3)
        await clients.directory.patch_actor("a-1", {"website": "https://example.org"}, admin)
    finally:
        await clients.aclose()
    checked, unchecked = seen
    assert (checked.method, checked.url.path) == ("PATCH", "/v1/actors/a-1")
    assert checked.headers["If-Match"] == '"3"' and "If-Match" not in unchecked.headers
    assert checked.content == b'{"description":"Atelier"}'
