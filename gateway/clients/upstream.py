"""The request machinery under the typed clients: one pool, timeouts, the forwarded identity, the errors mapped."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import httpx
import orjson
from httpx_aiohttp import AiohttpTransport
from prometheus_client import Counter

from gateway.errors import from_response, unavailable
from gateway.outages import describe_outage
from services.common.app import SERVICE_KEEP_ALIVE_S
from services.common.auth import PRINCIPAL_HEADER, Principal, mint_internal
from services.common.idempotency import KEY_HEADER
from services.common.observability import CORRELATION_HEADER, correlation_id
from services.common.settings import SERVICES, Settings

UPSTREAM_CALLS = Counter(
    "maillage_gateway_upstream_requests_total", "Calls from the gateway to the services", ["service", "outcome"]
)


Json = dict[str, Any]


def creation_headers(idempotency_key: str | None) -> dict[str, str]:
    """The headers of a creating call: the caller's idempotency key when there is one (gateway/idempotency.py checks
    it first), which the service keeps with its answer."""
    return {KEY_HEADER: idempotency_key} if idempotency_key is not None else {}


class Upstream:
    """Calls `directory`, `events` and `matching` over one connection pool with timeouts."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.base_urls = {service: settings.url_for(service) for service in SERVICES}
        self.identities: dict[Principal, tuple[str, float]] = {}
        self.timeout = httpx.Timeout(settings.gateway_upstream_timeout_s, connect=1.0).as_dict()
        # aiohttp under httpx's API: a third of httpcore's CPU per call (bench/gateway.py). Requests go straight
        # to the pooled transport: calls to our own services need none of `AsyncClient`'s cookie jar, redirects
        # or auth flows, which cost another third of the CPU of a call.
        limits = httpx.Limits(
            max_connections=200, max_keepalive_connections=50, keepalive_expiry=SERVICE_KEEP_ALIVE_S / 2
        )
        self.transport = transport or AiohttpTransport(limits=limits, trust_env=False)

    def forwarded_identity(self, principal: Principal) -> str:
        """The signed identity for `principal`, re-signed when half its lifetime has passed (not on every call)."""
        now = time.monotonic()
        cached = self.identities.get(principal)
        if cached is not None and cached[1] > now:
            return cached[0]
        token = mint_internal(self.settings, principal)
        if len(self.identities) > 10_000:
            self.identities.clear()
        self.identities[principal] = (token, now + self.settings.internal_token_ttl_s / 2)
        return token

    def headers(self, principal: Principal | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if principal is not None:
            headers[PRINCIPAL_HEADER] = self.forwarded_identity(principal)
        if (cid := correlation_id.get()) is not None:
            headers[CORRELATION_HEADER] = cid
        return headers

    async def request(
        self,
        service: str,
        method: str,
        path: str,
        *,
        principal: Principal | None,
        headers: dict[str, str] | None = None,
        params: Any = None,
        json: Any = None,
    ) -> httpx.Response:
        """One call, its body read; transport errors are httpx's (`TimeoutException`, `TransportError`)."""
        all_headers = {**self.headers(principal), **(headers or {})}
        content = None
        if json is not None:
            content = orjson.dumps(json)
            all_headers["content-type"] = "application/json"
        request = httpx.Request(
            method,
            self.base_urls[service] + path,
            params=params,
            headers=all_headers,
            content=content,
            extensions={"timeout": self.timeout},
        )
        response = await self.transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def call(self, service: str, method: str, path: str, *, principal: Principal | None, **kwargs: Any) -> Any:
        """The JSON a service answers; its refusals and its absence become GraphQL errors with their codes."""
        try:
            response = await self.request(service, method, path, principal=principal, **kwargs)
        except httpx.TransportError as exc:
            outage = describe_outage(exc)
            UPSTREAM_CALLS.labels(service, "timeout" if outage.timed_out else "unreachable").inc()
            raise unavailable(service, outage.reason) from None
        UPSTREAM_CALLS.labels(service, str(response.status_code)).inc()
        if response.status_code >= 400:
            raise from_response(service, response)
        if response.status_code == 204 or not response.content:
            return None
        return orjson.loads(response.content)

    async def aclose(self) -> None:
        await self.transport.aclose()


class ServiceClient:
    """One service's typed client: its methods name the operations, this base sends them through the shared pool."""

    service: ClassVar[str]

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def call(
        self,
        method: str,
        path: str,
        *,
        principal: Principal | None,
        headers: dict[str, str] | None = None,
        params: Any = None,
        json: Any = None,
    ) -> Any:
        """The JSON the service answers (`Upstream.call`: its refusals and its absence as GraphQL errors)."""
        return await self.upstream.call(
            self.service, method, path, principal=principal, headers=headers, params=params, json=json
        )

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, params: Any = None
    ) -> httpx.Response:
        """An anonymous call whose answer is relayed as it is (pages and feeds); transport errors are httpx's."""
        return await self.upstream.request(self.service, method, path, principal=None, headers=headers, params=params)
