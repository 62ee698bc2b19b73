"""`maillage dev` as an admin runs it: starts everything, answers, reuses its data, stops leaving nothing behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from services.common.auth import PRINCIPAL_HEADER, Principal, Role, mint_internal
from services.common.embedded import die_with_parent, free_port, port_is_free
from services.common.settings import Settings
from services.launch.devstack import READY_LINE, load_dev_secrets

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Dev:
    process: subprocess.Popen[str]
    home: Path
    ports: dict[str, int]
    output: list[str]

    @property
    def token(self) -> str:
        return self.output[self._admin_marker() + 1].strip()

    @property
    def credential_id(self) -> str:
        found = re.search(r"credential ([0-9a-f-]{36})", self.output[self._admin_marker()])
        assert found, self.output[self._admin_marker()]
        return found.group(1)

    def _admin_marker(self) -> int:
        return next(i for i, line in enumerate(self.output) if line.startswith("Admin token"))

    def forwarded_admin(self) -> dict[str, str]:
        """What the gateway sends the services for an admin: they accept nothing else."""
        secrets = load_dev_secrets(self.home)
        settings = Settings(_env_file=None, internal_key=secrets["MAILLAGE_INTERNAL_KEY"])
        return {PRINCIPAL_HEADER: mint_internal(settings, Principal(subject="admin:e2e", role=Role.ADMIN))}

    def url(self, process: str) -> str:
        return f"http://127.0.0.1:{self.ports[process]}"


def _ports() -> dict[str, int]:
    names = ("gateway", "gateway_metrics", "directory", "events", "matching", "postgres", "kafka")
    return {name: free_port() for name in names}


def _env(home: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env["MAILLAGE_HOME"] = str(home)
    if os.environ.get("MAILLAGE_TEST_BROKER") == "kafka":  # make test-kafka: the stack runs on Apache Kafka
        env["MAILLAGE_DEV_BROKER"] = "kafka"
    for name, port in ports.items():
        env[f"MAILLAGE_{name.upper()}_PORT"] = str(port)
    return env


def start_dev(home: Path, ports: dict[str, int], timeout_s: float = 90) -> Dev:
    process = subprocess.Popen(
        [sys.executable, "-m", "services.launch.cli", "dev"],
        cwd=ROOT,
        env=_env(home, ports),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,  # an interrupted pytest must not leave a whole stack running
    )
    dev = Dev(process, home, ports, [])
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line:
            dev.output.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                return dev
        elif process.poll() is not None:
            break
        else:
            time.sleep(0.05)
    stop_dev(dev)
    raise AssertionError("maillage dev did not get ready:\n" + "\n".join(dev.output))


def stop_dev(dev: Dev, timeout_s: float = 60) -> int:
    if dev.process.poll() is None:
        dev.process.send_signal(signal.SIGTERM)
    try:
        return dev.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(dev.process.pid, signal.SIGKILL)
        raise


def leftovers(home: Path) -> list[str]:
    """Processes whose command line mentions this stack's home or ports."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(home) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline}")
    return found


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    home = tmp_path_factory.mktemp("dev") / ".maillage"
    dev = start_dev(home, _ports())
    yield dev
    if dev.process.poll() is None:
        stop_dev(dev)


class TestTheRunningStack:
    def test_it_prints_the_graphql_url_and_an_admin_token(self, dev: Dev) -> None:
        text = "\n".join(dev.output)
        assert READY_LINE in text
        assert f"{dev.url('gateway')}/graphql" in text
        assert dev.token.count(".") == 2

    def test_it_prints_the_console_and_demo_members_sign_in_links_that_sign_in(self, dev: Dev) -> None:
        text = "\n".join(dev.output)
        assert f"Console      {dev.url('gateway')}/" in text
        links = re.findall(r"http://\S+/connexion/lien\?jeton=\S+", text)
        assert len(links) == 2, text
        navigations = []
        for link in links:
            with httpx.Client(timeout=10) as browser:
                confirm = browser.get(link)
                assert confirm.status_code == 200 and "Me connecter" in confirm.text
                csrf = re.search(r'name="csrf" value="([^"]+)"', confirm.text)
                jeton = re.search(r'name="jeton" value="([^"]+)"', confirm.text)
                assert csrf and jeton
                signed_in = browser.post(
                    dev.url("gateway") + "/connexion/lien", data={"csrf": csrf.group(1), "jeton": jeton.group(1)}
                )
                assert signed_in.status_code == 303, signed_in.text[:500]
                home = browser.get(dev.url("gateway") + "/").text
                navigations.append(("Mes besoins" in home, "Besoins proposés" in home))
        assert navigations == [(True, False), (False, True)]  # an authority's member, then an actor's

    def test_the_demo_events_are_published_with_their_feeds(self, dev: Dev) -> None:
        from services.events.demo import DEMO_EVENTS

        assert f"demo events: {len(DEMO_EVENTS)} published, 0 already there" in dev.output
        found = httpx.get(f"{dev.url('events')}/v1/events", params={"first": 100}, timeout=5).json()
        titles = {edge["node"]["title"] for edge in found["edges"]}
        assert titles == {d.title for d in DEMO_EVENTS}
        forum = next(e["node"] for e in found["edges"] if e["node"]["title"] == DEMO_EVENTS[0].title)
        assert forum["capacity"] == 1500 and forum["flags"] == []
        feed = httpx.get(f"{dev.url('events')}/v1/feeds/territories/DEP-25.ics", timeout=5)
        assert feed.status_code == 200 and "Forum de l'ESS du Grand Besançon" in feed.text

    def test_the_demo_needs_are_published_and_matched(self, dev: Dev) -> None:
        from services.matching.demo import DEMO_NEEDS

        assert f"demo needs: {len(DEMO_NEEDS)} published, 0 already there" in dev.output
        admin = dev.forwarded_admin()
        needs = httpx.get(f"{dev.url('matching')}/v1/needs", params={"first": 100}, headers=admin, timeout=5).json()
        assert {n["title"] for n in needs["items"]} == {d.title for d in DEMO_NEEDS}
        first = next(n for n in needs["items"] if n["title"] == DEMO_NEEDS[0].title)
        deadline = time.monotonic() + 20
        while True:
            matches = httpx.get(f"{dev.url('matching')}/v1/needs/{first['id']}/matches", headers=admin, timeout=5)
            names = [m["actor_name"] for m in matches.json()]
            if names or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert names and names[0] == "Ressourcerie Besançon"

    def test_every_process_is_ready(self, dev: Dev) -> None:
        for process in ("gateway", "directory", "events", "matching"):
            response = httpx.get(f"{dev.url(process)}/readyz", timeout=5)
            assert response.status_code == 200, (process, response.text)

    def test_the_gateway_answers_graphql_with_the_admin_token(self, dev: Dev) -> None:
        response = httpx.post(
            f"{dev.url('gateway')}/graphql",
            json={"query": "{ __typename me { role } }"},
            headers={"Authorization": f"Bearer {dev.token}"},
            timeout=5,
        )
        assert response.json() == {"data": {"__typename": "Query", "me": {"role": "admin"}}}

    def test_a_service_accepts_the_gateway_signed_identity_and_refuses_a_forged_one(self, dev: Dev) -> None:
        secrets = load_dev_secrets(dev.home)
        settings = Settings(_env_file=None, internal_key=secrets["MAILLAGE_INTERNAL_KEY"])
        caller = Principal(subject="actor:42", role=Role.ACTOR, actor_id="42")
        good = httpx.get(
            f"{dev.url('directory')}/v1/me", timeout=5, headers={PRINCIPAL_HEADER: mint_internal(settings, caller)}
        )
        assert good.status_code == 200
        assert good.json()["actor_id"] == "42"
        forged_settings = settings.model_copy(update={"internal_key": "f" * 64})
        forged = httpx.get(
            f"{dev.url('directory')}/v1/me",
            timeout=5,
            headers={PRINCIPAL_HEADER: mint_internal(forged_settings, caller)},
        )
        assert forged.status_code == 401
        assert forged.json()["code"] == "UNAUTHENTICATED"

    def test_metrics_are_exported(self, dev: Dev) -> None:
        body = httpx.get(f"{dev.url('matching')}/metrics", timeout=5).text
        assert "maillage_outbox_published_total" in body or "maillage_http_request_seconds" in body
        gateway = httpx.get(f"{dev.url('gateway_metrics')}/metrics", timeout=5)
        assert gateway.status_code == 200 and "maillage_http_request_seconds" in gateway.text
        assert httpx.get(f"{dev.url('gateway')}/metrics", timeout=5).status_code == 404, "not on the public port"

    def test_the_admin_token_is_refused_by_the_services_and_once_revoked_by_the_gateway(self, dev: Dev) -> None:
        # Last of the class: it revokes the token the other tests use.
        bearer = {"Authorization": f"Bearer {dev.token}"}
        straight = httpx.get(f"{dev.url('matching')}/v1/needs", headers=bearer, timeout=5)
        assert straight.status_code == 401, "services trust only what the gateway forwards"
        env = {
            **_env(dev.home, dev.ports),
            "MAILLAGE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{dev.ports['postgres']}/postgres",
        }
        revoked = subprocess.run(
            [sys.executable, "-m", "services.launch.cli", "credentials", "revoke", dev.credential_id],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert revoked.returncode == 0, revoked.stderr
        answer = httpx.post(
            f"{dev.url('gateway')}/graphql", json={"query": "{ me { role } }"}, headers=bearer, timeout=5
        )
        assert answer.status_code == 401
        assert answer.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


class TestStartAndStop:
    def test_stop_leaves_no_process_and_frees_the_ports_and_a_second_run_reuses_the_data(self, tmp_path: Path) -> None:
        home = tmp_path / ".maillage"
        ports = _ports()
        first = start_dev(home, ports)
        pg_url = f"postgresql://postgres@127.0.0.1:{ports['postgres']}/maillage_directory"

        async def mark() -> None:
            conn = await asyncpg.connect(pg_url)
            await conn.execute("CREATE TABLE kept_between_runs (n int); INSERT INTO kept_between_runs VALUES (7)")
            await conn.close()

        async def read_mark() -> int:
            conn = await asyncpg.connect(pg_url)
            try:
                return int(await conn.fetchval("SELECT n FROM kept_between_runs"))
            finally:
                await conn.close()

        import asyncio

        asyncio.run(mark())
        assert stop_dev(first) == 0
        assert leftovers(home) == []
        assert all(port_is_free("127.0.0.1", port) for port in ports.values())

        second = start_dev(home, ports)
        try:
            assert asyncio.run(read_mark()) == 7
            assert any(line.startswith("demo needs: 0 published,") for line in second.output)
            assert any(line.startswith("demo events: 0 published,") for line in second.output)
        finally:
            assert stop_dev(second) == 0
        assert leftovers(home) == []

    def test_a_port_in_use_is_named(self, tmp_path: Path) -> None:
        ports = _ports()
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", ports["directory"]))
            squatter.listen()
            result = subprocess.run(
                [sys.executable, "-m", "services.launch.cli", "dev"],
                cwd=ROOT,
                env=_env(tmp_path / ".maillage", ports),
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert result.returncode == 2
        assert f"port {ports['directory']}" in result.stderr
        assert "MAILLAGE_DIRECTORY_PORT" in result.stderr
