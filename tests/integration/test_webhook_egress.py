"""Webhook connections over real sockets: the address checked is the one connected to, TLS checks the host name.

The DNS here is a resolver function handed to the pinned network (the machine's resolver cannot be made to
change its answer); every socket goes to 127.0.0.1, and an address elsewhere is refused before any packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import pytest

from services.common.auth import Role
from services.common.settings import Settings
from services.matching import webhooks
from services.matching.egress import PinnedNetwork, pinned_client
from tests.integration.matching_fixtures import Matching

HOOK_HOST = "hooks.maillage.test"
PUBLIC_ADDRESS = "93.184.216.34"  # passes the guard; never contacted (LoopbackOnly refuses it)


@dataclass
class Receiver:
    """An HTTP(S) server on 127.0.0.1 that records each request, the TLS server name asked for, and answers `status`."""

    port: int = 0
    status: int = 200
    headers: list[str] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
            await reader.readexactly(int(fields.get("content-length", "0")))
            self.requests.append({"method": method, "path": path, **fields})
            extra = "".join(f"{h}\r\n" for h in self.headers)
            writer.write(f"HTTP/1.1 {self.status} X\r\ncontent-length: 0\r\n{extra}\r\n".encode())
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def receiving(tls: ssl.SSLContext | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver()
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: receiver.server_names.append(name)
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0, ssl=tls)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()


class Dns:
    """A resolver whose answers change: the first lookup of a name gets `first`, every later one `then`."""

    def __init__(self, first: list[str], then: list[str] | None = None) -> None:
        self.first, self.then = first, then if then is not None else first
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.first if len(self.lookups) == 1 else self.then


class LoopbackOnly(httpcore.AnyIOBackend):
    """The real socket backend, which opens nothing outside 127.0.0.0/8 (and records what it was asked)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        if not host.startswith("127."):
            raise httpcore.ConnectError(f"{host}: this test opens sockets on the loopback only")
        return await super().connect_tcp(host, port, *args, **kwargs)


@dataclass
class Certificates:
    ca: Path
    server: ssl.SSLContext

    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A test CA and a server certificate for HOOK_HOST only, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Maillage test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", f"/CN={HOOK_HOST}")
    (folder / "server.ext").write_text(
        f"subjectAltName=DNS:{HOOK_HOST}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext")  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(folder / "server.pem", folder / "server.key")
    return Certificates(folder / "ca.pem", server)


async def deliver(network: PinnedNetwork, url: str, verify: ssl.SSLContext | bool = True) -> webhooks.Outcome:
    settings = Settings(_env_file=None, webhook_timeout_s=5)
    async with pinned_client(network, verify=verify) as client:
        return await webhooks.post(client, settings, url, [webhooks.new_secret()], "msg_egress", {"n": 1})


async def test_a_dns_answer_that_changes_after_the_check_does_not_reach_the_new_address() -> None:
    # The check sees a public address; a second lookup (the old client's own) would get the loopback receiver.
    dns = Dns([PUBLIC_ADDRESS], then=["127.0.0.1"])
    sockets = LoopbackOnly()
    async with receiving() as receiver:
        outcome = await deliver(
            PinnedNetwork(allow_private=False, resolve=dns, inner=sockets), f"http://{HOOK_HOST}:{receiver.port}/h"
        )
    assert dns.lookups == [HOOK_HOST]  # resolved once
    assert sockets.asked == [PUBLIC_ADDRESS]  # the connection went to the address checked
    assert receiver.requests == []
    assert not outcome.delivered and outcome.error == "connection error: ConnectError"


async def test_a_host_that_rebinds_to_metadata_is_refused_before_connecting_even_with_private_targets_allowed() -> None:
    for answer in (["169.254.169.254"], ["::ffff:169.254.169.254"], ["127.0.0.1", "fd00:ec2::254"]):
        sockets = LoopbackOnly()
        outcome = await deliver(
            PinnedNetwork(allow_private=True, resolve=Dns(answer), inner=sockets), f"http://{HOOK_HOST}/latest"
        )
        assert sockets.asked == [], answer
        assert outcome.error is not None and outcome.error.startswith("refused:"), outcome
        assert "link-local or cloud metadata" in outcome.error and not outcome.retryable


async def test_tls_goes_to_the_pinned_address_with_the_host_name_for_sni_host_and_certificate(
    certificates: Certificates,
) -> None:
    sockets = LoopbackOnly()
    network = PinnedNetwork(allow_private=True, resolve=Dns(["127.0.0.1"]), inner=sockets)
    async with receiving(certificates.server) as receiver:
        outcome = await deliver(network, f"https://{HOOK_HOST}:{receiver.port}/hook", certificates.client())
        assert outcome.delivered, outcome
        assert sockets.asked == ["127.0.0.1"]
        assert receiver.server_names == [HOOK_HOST]
        assert receiver.requests[0]["host"] == f"{HOOK_HOST}:{receiver.port}"
        assert receiver.requests[0]["path"] == "/hook"

        # A certificate is checked against the URL's name, not the address: another name on the same server fails.
        other = await deliver(network, f"https://other.maillage.test:{receiver.port}/hook", certificates.client())
        assert not other.delivered and other.error == "connection error: ConnectError" and other.retryable
        assert len(receiver.requests) == 1


async def test_a_redirect_is_answered_not_followed() -> None:
    async with receiving() as receiver, receiving() as elsewhere:
        receiver.status = 307
        receiver.headers = [f"location: http://127.0.0.1:{elsewhere.port}/stolen"]
        outcome = await deliver(
            PinnedNetwork(allow_private=True, resolve=Dns(["127.0.0.1"])), f"http://{HOOK_HOST}:{receiver.port}/h"
        )
    assert outcome.status_code == 307 and not outcome.delivered and not outcome.retryable
    assert len(receiver.requests) == 1 and elsewhere.requests == []


async def test_registering_a_metadata_url_is_refused_on_a_stack_that_allows_private_targets(matching: Matching) -> None:
    assert matching.settings.webhook_allow_private
    partner = matching.token(Role.PARTNER, subject=f"partner-{uuid.uuid4().hex[:6]}")
    async with matching.client() as http:
        for url in (
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:a9fe:a9fe]/",
        ):
            refused = await http.post(
                "/v1/webhooks", json={"url": url, "event_types": ["need.published"]}, headers=partner
            )
            assert refused.status_code == 422, (url, refused.text)
            assert "link-local or cloud metadata" in refused.text
