"""Fixtures that run the matching service for real (API and workers), with an SMTP sink and a webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import asyncpg
import httpx
import pytest
from aiosmtpd.controller import Controller

from bench.quality import load_replica, load_set
from services.common.auth import Role
from services.common.db import create_pool, ensure_database, migrate
from services.common.embedded import EmbeddedBroker, free_port
from services.common.settings import Settings, with_database
from services.launch.registry import service_app
from tests.integration.directory_fixtures import Directory, running_directory, serve
from tests.integration.identities import forwarded


@contextlib.asynccontextmanager
async def quality_replica(postgres_url: str, name: str, connections: int) -> AsyncIterator[asyncpg.Pool]:
    """A fresh matching replica holding the quality set's pool (bench/quality), and a pool of `connections` on it."""
    url = with_database(postgres_url, f"maillage_{name}_{uuid.uuid4().hex[:8]}")
    await load_replica(url, load_set())
    pool = await create_pool(url, min_size=connections, max_size=connections)
    try:
        yield pool
    finally:
        await pool.close()


class SmtpSink:
    """Keeps every message an SMTP client sends (aiosmtpd handler)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


@dataclass
class Receiver:
    """A webhook receiver: on each path, every webhook-id gets a scripted list of statuses, then 200."""

    url: str
    scripts: dict[str, list[int]] = field(default_factory=dict)
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def ids(self, path: str) -> Counter[str]:
        return Counter(h["webhook-id"] for p, h, _ in self.received if p == path)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender died mid-request (the kill test): nothing was delivered
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        earlier = sum(1 for p, h, _ in self.received if p == path and h.get("webhook-id") == headers.get("webhook-id"))
        self.received.append((path, headers, body))
        script = self.scripts.get(path, [])  # the same script for each webhook-id
        status = script[earlier] if earlier < len(script) else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@dataclass
class Matching:
    url: str
    settings: Settings
    database_url: str
    admin: dict[str, str]
    smtp: SmtpSink
    receiver: Receiver

    def token(self, role: Role, actor_id: str | None = None, subject: str | None = None) -> dict[str, str]:
        return forwarded(self.settings, role, actor_id, subject)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)


async def fresh_database(postgres_url: str, service: str) -> str:
    """A new database for one service's tests, migrated."""
    database_url = with_database(postgres_url, f"maillage_{service}_test_{uuid.uuid4().hex[:8]}")
    await ensure_database(database_url)
    await migrate(database_url, ["services.common", f"services.{service}"])
    return database_url


@contextlib.contextmanager
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    """A local SMTP server keeping every message (aiosmtpd), and its port."""
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@contextlib.asynccontextmanager
async def running_matching(settings: Settings, postgres_url: str, directory: Directory) -> AsyncIterator[Matching]:
    """Matching with role `all` on a fresh database, reading the directory's actors from the broker."""
    database_url = await fresh_database(postgres_url, "matching")
    receiver = Receiver("")
    receiver_server, receiver_task, receiver_port = await serve(receiver)
    receiver.url = f"http://127.0.0.1:{receiver_port}"
    with smtp_sink() as (sink, smtp_port):
        own = settings.model_copy(
            update={
                "matching_database_url": database_url,
                "directory_url": directory.url,
                "smtp_port": smtp_port,
                "webhook_allow_private": True,
                "webhook_retry_base_s": 0.05,
                "need_expiry_interval_s": 0.5,
                "match_max_interested": 2,
            }
        )
        server, serving, port = await serve(service_app("matching", "all", own))
        admin = forwarded(own, Role.ADMIN)
        try:
            yield Matching(f"http://127.0.0.1:{port}", own, database_url, admin, sink, receiver)
        finally:
            server.should_exit = True
            receiver_server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(serving, receiver_task), 30)


@pytest.fixture(scope="session")
async def matching(settings: Settings, postgres_url: str, directory: Directory) -> AsyncIterator[Matching]:
    """The matching service every test shares (one per session), with its SMTP sink and webhook receiver."""
    async with running_matching(settings, postgres_url, directory) as running:
        yield running


@pytest.fixture
async def own_matching(
    settings: Settings, postgres_url: str, own_broker: EmbeddedBroker
) -> AsyncIterator[tuple[Directory, Matching]]:
    """A directory and a matching service of the test's own, on its own broker: an e-mail queue no other test fills.

    The shared matching service sends every test's e-mails, oldest first: after tests that published many needs
    near many actors, hundreds of e-mails (40 per need) wait ahead of a new one, and a test waiting for its own
    e-mails waits for all of them. A test that awaits e-mails uses this stack, so that it waits for its own only.
    """
    # `own_broker` is a Tansu whatever the run's broker, and Tansu refuses the idempotent producer.
    own = settings.model_copy(update={"kafka_bootstrap": own_broker.bootstrap, "kafka_idempotent_producer": False})
    async with running_directory(own, postgres_url) as directory, running_matching(own, postgres_url, directory) as m:
        yield directory, m
