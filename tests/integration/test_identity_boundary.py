"""One identity boundary: public tokens end at the gateway, services trust forwarded and service identities only."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.auth import issue_credential, revoke_credential
from services.common.auth import Role, mint_token, service_headers
from services.common.db import ensure_database, migrate
from services.common.embedded import EmbeddedPostgres, free_port
from services.common.settings import Settings, with_database
from services.launch.devstack import DevStack
from tests.conftest import TEST_HOME
from tests.integration.directory_fixtures import Directory
from tests.integration.events_fixtures import Events
from tests.integration.gateway_fixtures import Gateway, running_gateway
from tests.integration.matching_fixtures import Matching


def codes(answer: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors") or []]


def new_actor(name: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "association",
        "commune_code": "25056",
        "location": {"lat": 47.24, "lon": 6.02},
        "themes": ["reemploi"],
        "contact": {"name": "Camille Martin", "email": f"{uuid.uuid4().hex[:8]}@example.org"},
        **overrides,
    }


# --- services: forwarded identities only --------------------------------------------------------------------


async def test_a_public_token_sent_straight_to_a_service_is_refused(
    directory: Directory, events: Events, matching: Matching, gateway_settings: Settings
) -> None:
    admin_token = "Bearer " + mint_token(directory.settings, role=Role.ADMIN)
    async with httpx.AsyncClient(timeout=10) as http:
        for url in (directory.url, events.url, matching.url):
            me = await http.get(url + "/v1/me", headers={"Authorization": admin_token})
            assert me.status_code == 401, (url, me.text)
            assert me.json()["code"] == "UNAUTHENTICATED"
            assert "only the identity the gateway forwards" in me.json()["detail"]
            assert (await http.get(url + "/v1/me", headers=directory.admin)).status_code == 200
        # Not read as anonymous either: a route open to everyone refuses the token rather than ignoring it.
        search = await http.get(directory.url + "/v1/actors", headers={"Authorization": admin_token})
        assert search.status_code == 401

        # The case of the issue: a collectivity's credential, revoked at the gateway, used at the services.
        authority = await http.post(
            directory.url + "/v1/actors",
            json=new_actor("Mairie révoquée", kind="local_authority"),
            headers=directory.admin,
        )
        conn = await asyncpg.connect(gateway_settings.database_url_for("gateway"))
        try:
            row, token = await issue_credential(
                gateway_settings,
                conn,
                name="Mairie révoquée",
                role=Role.COLLECTIVITY,
                actor_id=authority.json()["id"],
                issued_by="tests",
            )
            await revoke_credential(conn, row["id"], revoked_by="tests")
        finally:
            await conn.close()
        for url in (events.url, matching.url):
            straight = await http.get(url + "/v1/me", headers={"Authorization": "Bearer " + token})
            assert straight.status_code == 401, (url, straight.text)


async def test_a_service_identity_reads_contacts_and_snapshots_and_nothing_else(directory: Directory) -> None:
    matching_identity = service_headers(directory.settings, "matching")
    async with directory.client() as http:
        created = await http.post("/v1/actors", json=new_actor("Ressourcerie du contact"), headers=directory.admin)
        assert created.status_code == 201, created.text
        actor = created.json()

        # What the matching notifier needs: the address of the actor it writes to (never in events).
        read = await http.get(f"/v1/actors/{actor['id']}", headers=matching_identity)
        assert read.status_code == 200, read.text
        assert read.json()["contact"]["email"] == actor["contact"]["email"]
        assert (await http.get(f"/v1/actors/{actor['id']}")).json()["contact"] is None
        events_reads = await http.get(
            f"/v1/actors/{actor['id']}", headers=service_headers(directory.settings, "events")
        )
        assert events_reads.status_code == 403, "the events service has no business with contacts"

        # What a replica rebuild needs: the snapshot, for either replica.
        for service in ("events", "matching"):
            snapshot = await http.get(
                "/v1/actors/snapshot", params={"limit": 1}, headers=service_headers(directory.settings, service)
            )
            assert snapshot.status_code == 200, snapshot.text
            assert "contact" not in snapshot.json()["items"][0]

        # And nothing an admin may do: the identity is not an admin's.
        attempts = [
            http.post("/v1/actors", json=new_actor("Ajoutée par un service"), headers=matching_identity),
            http.put(
                f"/v1/actors/{actor['id']}",
                json=new_actor("Renommée par un service"),
                headers={**matching_identity, "If-Match": '"1"'},
            ),
            http.post(f"/v1/actors/{actor['id']}/archive", headers=matching_identity),
            http.get("/v1/actors", headers=matching_identity),
            http.get("/v1/me", headers=matching_identity),
        ]
        for attempt in await asyncio.gather(*attempts):
            assert attempt.status_code == 403, (attempt.request.method, attempt.request.url, attempt.text)
            assert attempt.json()["code"] == "FORBIDDEN"
        unchanged = await http.get(f"/v1/actors/{actor['id']}", headers=directory.admin)
        assert unchanged.json()["name"] == "Ressourcerie du contact" and unchanged.json()["status"] != "archived"


# --- the gateway: recorded credentials only -------------------------------------------------------------


async def test_a_well_signed_token_that_names_no_credential_is_refused(gateway: Gateway) -> None:
    unknown = mint_token(gateway.settings, role=Role.ADMIN, token_id=str(uuid.uuid4()))
    refused = await gateway.gql("{ me { role } }", None, "Bearer " + unknown, status=401)
    assert codes(refused) == ["UNAUTHENTICATED"]
    assert "not a credential of this gateway" in refused["errors"][0]["message"]
    # What `maillage token` used to mint: a random hex jti, recorded nowhere.
    unrecorded = mint_token(gateway.settings, role=Role.ADMIN)
    refused = await gateway.gql("{ me { role } }", None, "Bearer " + unrecorded, status=401)
    assert codes(refused) == ["UNAUTHENTICATED"] and "not a credential" in refused["errors"][0]["message"]
    odd = mint_token(gateway.settings, role=Role.ADMIN, token_id="admin-2024")
    refused = await gateway.gql("{ me { role } }", None, "Bearer " + odd, status=401)
    assert codes(refused) == ["UNAUTHENTICATED"] and "names no credential" in refused["errors"][0]["message"]


def run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[str, str]:
    """Run `maillage …` against these settings; its (stdout, stderr)."""
    from typer.testing import CliRunner

    from services.common import settings as settings_module
    from services.launch import cli

    monkeypatch.setattr(settings_module, "get_settings", lambda: settings)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return str(result.stdout), str(result.stderr)


async def revoke_with_the_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, credential_id: str) -> None:
    # The CLI runs its own event loop: give it a thread, away from the test's loop.
    await asyncio.to_thread(run_cli, settings, monkeypatch, "credentials", "revoke", credential_id)


async def test_a_token_from_maillage_token_is_a_credential_the_cli_revokes(
    gateway: Gateway, gateway_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, err = await asyncio.to_thread(
        run_cli, gateway_settings, monkeypatch, "token", "--role", "partner", "--subject", "partner:carte-cress"
    )
    token = "Bearer " + out.strip().splitlines()[-1]
    match = re.search(r"credential ([0-9a-f-]{36}) \(partner", err)
    assert match, err
    me = await gateway.ok("{ me { role subject } }", None, token)
    assert me["me"] == {"role": "partner", "subject": "partner:carte-cress"}
    await revoke_with_the_cli(gateway_settings, monkeypatch, match.group(1))
    refused = await gateway.gql("{ me { role } }", None, token, status=401)
    assert codes(refused) == ["UNAUTHENTICATED"] and "revoked" in refused["errors"][0]["message"]


async def test_the_dev_stack_admin_token_is_a_credential_the_cli_revokes(
    gateway: Gateway, gateway_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = DevStack(gateway_settings)
    stack.admin_credential = await stack.issue_admin_credential()
    credential_id, token = stack.admin_credential
    banner = stack.banner(1.0).splitlines()
    printed = banner.index(token)
    assert f"maillage credentials revoke {credential_id}" in banner[printed - 1]
    assert (await gateway.ok("{ me { role subject } }", None, "Bearer " + token))["me"] == {
        "role": "admin",
        "subject": "admin:dev",
    }
    await revoke_with_the_cli(gateway_settings, monkeypatch, credential_id)
    refused = await gateway.gql("{ me { role } }", None, "Bearer " + token, status=401)
    assert codes(refused) == ["UNAUTHENTICATED"] and "revoked" in refused["errors"][0]["message"]


# --- the gateway's database down ----------------------------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of the test's own, to stop."""
    server = EmbeddedPostgres(TEST_HOME / f"postgres-down-{uuid.uuid4().hex[:6]}", free_port(), shared_buffers="32MB")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


async def gateway_on(server: EmbeddedPostgres) -> str:
    database_url = with_database(server.url, "maillage_gateway")
    await ensure_database(database_url)
    await migrate(database_url, ["gateway"])
    return database_url


@contextlib.asynccontextmanager
async def silent_listener(port: int) -> AsyncIterator[None]:
    """Something that accepts connections on `port` and never answers (a hung host)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", port, family=socket.AF_INET, reuse_address=True)
    try:
        yield
    finally:
        server.close()
        for writer in held:
            writer.close()


async def test_with_its_database_down_the_gateway_says_unavailable_and_still_serves_anonymous_requests(
    gateway_settings: Settings, own_postgres: EmbeddedPostgres
) -> None:
    database_url = await gateway_on(own_postgres)
    async with running_gateway(
        gateway_settings, gateway_database_url=database_url, gateway_credential_timeout_s=0.5
    ) as alone:
        used, first, second = (alone.bearer(Role.PARTNER) for _ in range(3))
        assert (await alone.ok("{ me { role } }", None, used))["me"]["role"] == "partner"

        await asyncio.to_thread(own_postgres.stop)
        answers = []
        async with httpx.AsyncClient(timeout=10) as http:
            # Credentials not seen yet: nothing known of them may let them in (a cached one is served only while
            # the replica still hears of every change, which it stops doing within two check periods).
            for authorization in (first, second, first):
                response = await http.post(
                    alone.url + "/graphql", json={"query": "{ __typename }"}, headers={"Authorization": authorization}
                )
                answers.append(response)
        for response in answers:
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert codes(response.json()) == ["UNAVAILABLE"]
            assert response.json()["errors"][0]["message"].startswith(
                "credentials cannot be checked: the gateway's database is unavailable ("
            )
        assert "(connection refused)" in answers[-1].json()["errors"][0]["message"]
        assert (await alone.ok("{ __typename }"))["__typename"] == "Query"
        served = await alone.ok('{ actors(first: 1, filter: {themes: ["reemploi"]}) { totalCount } }')
        assert served["actors"]["totalCount"] >= 0, "the services' fields still answer anonymous requests"

        # A database that accepts connections and never answers: the wait is bounded, and said to be one.
        async with silent_listener(own_postgres.port):
            started = time.monotonic()
            hung = await alone.gql("{ __typename }", None, second, status=503)
            assert time.monotonic() - started < 3
            assert codes(hung) == ["UNAVAILABLE"] and "(timed out" in hung["errors"][0]["message"]
            assert (await alone.ok("{ __typename }"))["__typename"] == "Query"
