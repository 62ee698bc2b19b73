"""Property testing of the directory's and the events' REST APIs from their OpenAPI documents: no input gets a 5xx."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings

from services.common.embedded import free_port
from services.common.settings import Settings
from tests.integration.directory_fixtures import Directory
from tests.integration.events_fixtures import Events


@contextlib.contextmanager
def serve_process(service: str, database_url: str, s: Settings) -> Iterator[str]:
    """One service's API in its own process (schemathesis calls it synchronously); yields its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env.update(
        {
            f"MAILLAGE_{service.upper()}_DATABASE_URL": database_url,
            "MAILLAGE_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "MAILLAGE_KAFKA_IDEMPOTENT_PRODUCER": str(s.kafka_idempotent_producer).lower(),
            "MAILLAGE_JWT_KEYS": s.jwt_keys,
            "MAILLAGE_JWT_ACTIVE_KID": s.jwt_active_kid,
            "MAILLAGE_INTERNAL_KEY": s.internal_key,
            "MAILLAGE_LOG_LEVEL": "WARNING",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "services.launch.cli", "serve", service, "--role", "api", "--port", str(port)],
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)


def fuzz(url: str, admin: dict[str, str]) -> list[str]:
    """Every operation of the service's OpenAPI document, 25 generated cases each; none may get a 5xx."""
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
            response = case.call(base_url=url, headers=admin, timeout=10)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
            )

        no_server_error()
        checked.append(operation.label)
    return checked


def test_no_input_gets_a_server_error(directory: Directory) -> None:
    with serve_process("directory", directory.database_url, directory.settings) as url:
        checked = fuzz(url, directory.admin)
        assert len(checked) >= 9, checked


def test_no_input_to_events_gets_a_server_error(events: Events) -> None:
    with serve_process("events", events.database_url, events.settings) as url:
        checked = fuzz(url, events.admin)
        assert len(checked) >= 20, checked
