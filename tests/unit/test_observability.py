"""The request middleware: the correlation id comes back on the response and each request is counted by route."""

from __future__ import annotations

import httpx
import pytest

from services.common.settings import Settings
from services.launch.registry import service_app

pytestmark = pytest.mark.asyncio


async def test_correlation_id_and_request_metrics_by_route() -> None:
    app = service_app("events", "api", Settings(_env_file=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        given = await client.get("/healthz", headers={"X-Correlation-ID": "corr-42"})
        fresh = await client.get("/healthz")
        metrics = (await client.get("/metrics")).text
    assert given.headers["x-correlation-id"] == "corr-42"
    assert fresh.headers["x-correlation-id"] and fresh.headers["x-correlation-id"] != "corr-42"
    count = next(
        line
        for line in metrics.splitlines()
        if line.startswith("maillage_http_request_seconds_count")
        and 'route="/healthz"' in line
        and 'service="events"' in line
    )
    assert float(count.rsplit(" ", 1)[1]) >= 2
