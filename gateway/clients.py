"""The gateway's one pooled HTTP client to the services, forwarding the caller's identity signed by the gateway."""

from __future__ import annotations

from typing import Any

import httpx

from services.common.auth import PRINCIPAL_HEADER, Principal, mint_internal
from services.common.observability import CORRELATION_HEADER, correlation_id
from services.common.settings import SERVICES, Settings


class ServiceClients:
    """Calls `directory`, `events` and `matching` over one connection pool with timeouts."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.base_urls = {service: settings.url_for(service) for service in SERVICES}
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(5.0, connect=1.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            transport=transport,
        )

    def headers(self, principal: Principal | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if principal is not None:
            headers[PRINCIPAL_HEADER] = mint_internal(self.settings, principal)
        if (cid := correlation_id.get()) is not None:
            headers[CORRELATION_HEADER] = cid
        return headers

    async def request(
        self, service: str, method: str, path: str, *, principal: Principal | None, **kwargs: Any
    ) -> httpx.Response:
        url = self.base_urls[service] + path
        return await self.http.request(method, url, headers=self.headers(principal), **kwargs)

    async def aclose(self) -> None:
        await self.http.aclose()
