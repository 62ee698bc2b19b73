"""The gateway forwards the caller as an identity the services verify, plus the correlation id."""

from __future__ import annotations

import httpx

from gateway.clients import ServiceClients
from services.common.auth import PRINCIPAL_HEADER, Principal, Role, verify_internal
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
