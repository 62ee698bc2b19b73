"""Outbound HTTP to partners' URLs that connects only to an address it has checked: the SSRF guard of webhooks.

A URL's host is resolved once, inside the connection: every address of the answer must pass `refusal`, and the
socket is opened to one of those same addresses, so a DNS answer that changes between a check and a connection
(DNS rebinding) cannot reach anything else. The request keeps the URL's host name: the `Host` header, TLS SNI and
the certificate check all use it, never the IP. Link-local and cloud metadata addresses are refused even when
private targets are allowed (`MAILLAGE_WEBHOOK_ALLOW_PRIVATE`, for tests and the embedded stack).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Cloud instance metadata services that are not in 169.254.0.0/16: AWS's IPv6 endpoint and Alibaba Cloud's.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})
# IPv6 prefixes that carry an IPv4 address in their last 32 bits and reach it through a translator (NAT64).
NAT64_PREFIXES = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class TargetRefused(Exception):
    """A partner URL that must not be reached (its scheme, or an address its host resolves to)."""


def embedded_ipv4(address: IPAddress) -> Iterator[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (mapped, compatible, 6to4, Teredo, NAT64)."""
    if isinstance(address, ipaddress.IPv4Address):
        return
    if address.ipv4_mapped is not None:
        yield address.ipv4_mapped
    if address.sixtofour is not None:
        yield address.sixtofour
    if address.teredo is not None:
        yield address.teredo[1]
    if address in IPV4_COMPATIBLE or any(address in prefix for prefix in NAT64_PREFIXES):
        yield ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """What kind of address `address` is when it must not be reached, or None. Link-local and metadata: always."""
    candidates = [address, *embedded_ipv4(address)]
    for candidate in candidates:
        if candidate.is_link_local or candidate in METADATA_ADDRESSES:
            return "a link-local or cloud metadata address"
    if allow_private:
        return None
    for candidate in candidates:
        if not candidate.is_global or candidate.is_multicast:
            return "a private, loopback or reserved address"
    return None


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses of `host` from the system's resolver, in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(host: str, port: int, *, allow_private: bool, resolve: Resolver) -> list[IPAddress]:
    """`host`'s addresses, resolved once, every one of them allowed; `TargetRefused` otherwise."""
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a.partition("%")[0]) for a in await resolve(host, port)]
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"{host}: does not resolve ({exc.strerror})") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host}: does not resolve")
    for address in addresses:
        kind = refusal(address, allow_private=allow_private)
        if kind is not None:
            # One bad answer refuses the host: an answer mixing public and private addresses is an attack.
            raise TargetRefused(f"{address} is {kind}" if literal else f"{host} resolves to {address}, {kind}")
    return addresses


class PinnedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network backend that opens each connection to an address of the host checked just before.

    httpcore calls `connect_tcp` with the URL's host and later starts TLS with that same name (SNI, certificate
    check); only the socket's address is the checked IP.
    """

    def __init__(
        self,
        *,
        allow_private: bool,
        resolve: Resolver = system_resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolve = resolve
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                addresses = await checked_addresses(host, port, allow_private=self.allow_private, resolve=self.resolve)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"{host}: no DNS answer in {timeout} s") from exc
        failure: Exception = httpcore.ConnectError(f"{host}: no address")
        for address in addresses:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout=left, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise TargetRefused("partner URLs are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a `PinnedNetwork` (httpx takes no network backend: its pool is built here)."""

    def __init__(self, network: PinnedNetwork, *, verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(verify=verify, trust_env=False)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=network,
        )


def pinned_client(network: PinnedNetwork, *, verify: ssl.SSLContext | bool = True) -> httpx.AsyncClient:
    """A client for partners' URLs: pinned connections, no redirects followed, no proxy from the environment.

    `trust_env=False` matters: a proxy taken from `HTTPS_PROXY` would be reached instead of the checked address.
    """
    return httpx.AsyncClient(transport=PinnedTransport(network, verify=verify), follow_redirects=False, trust_env=False)
