"""A broker outage on the real stack, each service its own process: stopped 10 s during a stream, nothing is lost."""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.common.embedded import die_with_parent, free_port, stop_process
from services.common.settings import Settings
from services.launch.devstack import DevStack
from services.matching import webhooks

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]

OUTAGE_S = 10.0
# Each streamed actor sits alone at its own point, with a need around it: a need's matches must include its actor
# whichever reached matching first (a new actor is matched against open needs).
RADIUS_KM = 3.0


class WebhookReceiver(ThreadingHTTPServer):
    """A partner's endpoint: keeps the match id of every match.found it receives."""

    def __init__(self) -> None:
        self.match_ids: set[str] = set()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", free_port()), _Hook)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Hook(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.server.lock:
            self.server.match_ids.add(json.loads(body)["data"]["match"]["id"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@dataclass
class Stack:
    """Embedded PostgreSQL and Tansu, and each service's roles as processes of their own, as deployed."""

    dev: DevStack
    ports: dict[str, int]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, process: str) -> str:
        return f"http://127.0.0.1:{self.ports[process]}"

    def database_url(self, service: str) -> str:
        return self.dev.settings.database_url_for(service)

    def spawn(self, process: str, env: dict[str, str]) -> None:
        service, role = process.split("-")
        log = open(self.dev.home / "logs" / f"{process}.log", "ab")  # noqa: SIM115 - the child owns it
        self.processes[process] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.launch.cli",
                "serve",
                service,
                "--role",
                role,
                "--port",
                str(self.ports[process]),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = set(self.processes)
        while waiting:
            for process in sorted(waiting):
                assert self.processes[process].poll() is None, f"{process} exited:\n{self.log_tail(process)}"
                try:
                    if httpx.get(f"{self.url(process)}/readyz", timeout=1).status_code == 200:
                        waiting.discard(process)
                except httpx.HTTPError:
                    pass
            assert time.monotonic() < deadline, f"not ready: {waiting}"
            time.sleep(0.1)

    def log_tail(self, process: str, lines: int = 40) -> str:
        path = self.dev.home / "logs" / f"{process}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process, signal.SIGTERM, timeout_s=25)
        self.dev.stop()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name in [n for n in os.environ if n.startswith("MAILLAGE_")]:
        monkeypatch.delenv(name)  # this test stops and restarts its own embedded broker
    processes = ("directory-all", "events-worker", "matching-api", "matching-worker")
    ports = {name: free_port() for name in (*processes, "postgres", "kafka")}
    settings = Settings(
        _env_file=None,
        home=str(tmp_path / ".maillage"),
        postgres_port=ports["postgres"],
        kafka_port=ports["kafka"],
        directory_port=ports["directory-all"],
        events_port=ports["events-worker"],
        matching_port=ports["matching-api"],
        gateway_port=free_port(),
        log_format="text",
    )
    dev = DevStack(settings, out=io.StringIO())
    stack = Stack(dev, ports)
    try:
        dev.start(with_services=False)  # PostgreSQL, the broker, databases, topics and the demo actors
        env = dev.child_env() | {
            "MAILLAGE_CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "MAILLAGE_OUTBOX_POLL_INTERVAL_S": "0.2",
            "MAILLAGE_WEBHOOK_RETRY_BASE_S": "0.1",
        }
        for process in processes:
            stack.spawn(process, env)
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


async def _fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(database_url, query, *args))


@dataclass
class Stream:
    """Registers actors and publishes a need around each, one pair after another, until stopped."""

    stack: Stack
    authority_id: str
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (actor id, need id)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        # Straight to the services, which trust only a forwarded identity (the gateway's, here signed by the stack).
        with httpx.Client(timeout=10, auth=self.stack.dev.operator()) as http:
            n = 0
            while not self.stop.is_set():
                # Points 0.2° apart (>= 15 km): no actor lies within another pair's radius.
                lat, lon = 43.5 + 0.2 * (n // 30), -0.5 + 0.2 * (n % 30)
                n += 1
                try:
                    self.pairs.append(self._pair(http, n, lat, lon))
                except (httpx.HTTPError, AssertionError) as exc:
                    self.errors.append(repr(exc))
                time.sleep(0.2)

    def _pair(self, http: httpx.Client, n: int, lat: float, lon: float) -> tuple[str, str]:
        tag = secrets.token_hex(3)
        actor = http.post(
            f"{self.stack.url('directory-all')}/v1/actors",
            json={
                "name": f"Ressourcerie {n} {tag}",
                "kind": "association",
                "commune_code": "25056",
                "themes": ["reemploi"],
                "service_types": ["fourniture_biens"],
                "activities": [],
                "location": {"lat": lat, "lon": lon},
                "description": "Collecte, tri et revente d'objets de seconde main.",
                "contact": {"email": f"ressourcerie-{tag}@example.org"},
            },
        )
        assert actor.status_code == 201, actor.text
        need = http.post(
            f"{self.stack.url('matching-api')}/v1/needs",
            json={
                "owner_id": self.authority_id,
                "title": f"Une ressourcerie pour le quartier {n}",
                "kind": "partnership",
                "description": "Collecte et revente d'objets de seconde main, réemploi",
                "themes": ["reemploi"],
                "service_types": ["fourniture_biens"],
                "commune_code": "25056",
                "location": {"lat": lat, "lon": lon},
                "perimeter": {"radius_km": RADIUS_KM},
                "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
        )
        assert need.status_code == 201, need.text
        return actor.json()["id"], need.json()["id"]


def converged(stack: Stack, stream: Stream, receiver: WebhookReceiver) -> dict[str, int]:
    """What is still missing: actors absent from a replica, needs without their actor, matches not delivered."""
    actors = [uuid.UUID(a) for a, _ in stream.pairs]
    in_events = fetch(stack.database_url("events"), "SELECT id FROM actors WHERE id = ANY($1)", actors)
    in_matching = fetch(stack.database_url("matching"), "SELECT id FROM actors WHERE id = ANY($1)", actors)
    matches = fetch(
        stack.database_url("matching"),
        "SELECT id, need_id, actor_id FROM matches WHERE need_id = ANY($1)",
        [uuid.UUID(n) for _, n in stream.pairs],
    )
    found = {(str(m["need_id"]), str(m["actor_id"])) for m in matches}
    with receiver.lock:
        delivered = set(receiver.match_ids)
    return {
        "actors missing from events": len(actors) - len(in_events),
        "actors missing from matching": len(actors) - len(in_matching),
        "needs without their actor": sum((n, a) not in found for a, n in stream.pairs),
        "matches without a webhook": sum(str(m["id"]) not in delivered for m in matches),
    }


def test_a_broker_stopped_10_s_during_a_stream_loses_nothing_and_no_process_is_restarted(stack: Stack) -> None:
    receiver = WebhookReceiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    matching_db = stack.database_url("matching")
    fetch(
        matching_db,
        "INSERT INTO webhook_endpoints (id, owner, url, event_types, secret) VALUES ($1, 'partner-o', $2, $3, $4)",
        uuid.uuid4(),
        receiver.url,
        ["match.found"],
        webhooks.new_secret(),
    )
    authority = fetch(
        stack.database_url("directory"), "SELECT id FROM actors WHERE kind = 'local_authority' ORDER BY id LIMIT 1"
    )[0]["id"]
    deadline = time.monotonic() + 60  # the demo actors are still flowing to the replicas
    while not fetch(matching_db, "SELECT 1 FROM actors WHERE id = $1", authority):
        assert time.monotonic() < deadline, "the authority never reached matching's replica"
        time.sleep(0.2)
    stream = Stream(stack, str(authority))
    streaming = threading.Thread(target=stream.run, daemon=True)
    started = time.monotonic()
    first: dict[str, int] = {}
    try:
        streaming.start()
        deadline = time.monotonic() + 30  # consumers in their steady state: the first pair went all the way
        while not stream.pairs or any(
            (first := converged(stack, Stream(stack, "", stream.pairs[:1]), receiver)).values()
        ):
            assert time.monotonic() < deadline, f"the stack never took a first pair all the way: {first}"
            time.sleep(0.2)

        broker = stack.dev.broker
        assert broker is not None
        broker.stop()
        before_outage = len(stream.pairs)
        time.sleep(OUTAGE_S)
        broker.start()  # the same port, and nothing in it: Tansu keeps topics and offsets in memory
        restarted = time.monotonic()
        during_outage = len(stream.pairs) - before_outage
        time.sleep(4)
    finally:
        stream.stop.set()
        streaming.join(15)

    assert not stream.errors, stream.errors  # the APIs kept taking writes through the outage
    deadline = time.monotonic() + 45
    while any((missing := converged(stack, stream, receiver)).values()):
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p}\n{stack.log_tail(p)}" for p in stack.processes)
            raise AssertionError(f"not converged 45 s after the stream: {missing}\n{logs}")
        time.sleep(0.5)
    recovered_s = time.monotonic() - restarted
    assert during_outage >= 5, during_outage  # the outage was in the middle of the stream
    for process, child in stack.processes.items():
        assert child.poll() is None, f"{process} exited with {child.returncode}"
        assert httpx.get(f"{stack.url(process)}/healthz", timeout=5).status_code == 200, process
        assert httpx.get(f"{stack.url(process)}/readyz", timeout=5).status_code == 200, process
    print(
        f"{len(stream.pairs)} pairs ({during_outage} during the outage); converged {recovered_s:.1f} s after the "
        f"restart; {time.monotonic() - started:.0f} s"
    )
