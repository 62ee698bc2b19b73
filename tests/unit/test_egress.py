"""Which addresses a partner's webhook may reach: private ones only when allowed, link-local and metadata never."""

from __future__ import annotations

import ipaddress

import pytest

from services.matching.egress import refusal
from services.matching.webhooks import TargetRefused, check_target

ALWAYS_REFUSED = [
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack instance metadata
    "169.254.0.1",
    "fd00:ec2::254",  # AWS's IPv6 metadata endpoint
    "100.100.100.200",  # Alibaba Cloud's metadata endpoint
    "fe80::1",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:a9fe:a9fe",  # the same, written in hex
    "::169.254.169.254",  # IPv4-compatible
    "64:ff9b::a9fe:a9fe",  # NAT64
    "2002:a9fe:a9fe::1",  # 6to4
]
PRIVATE = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.10",
    "100.64.0.1",
    "0.0.0.0",  # noqa: S104 (an address checked, not bound)
    "::1",
    "fd12:3456::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "224.0.1.1",
    "192.0.2.10",
]
PUBLIC = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("address", ALWAYS_REFUSED)
def test_link_local_and_metadata_addresses_are_refused_even_when_private_targets_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=True) is not None
    assert refusal(ipaddress.ip_address(address), allow_private=False) is not None


@pytest.mark.parametrize("address", PRIVATE)
def test_private_loopback_and_reserved_addresses_are_refused_unless_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=False) is not None
    assert refusal(ipaddress.ip_address(address), allow_private=True) is None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_reached(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "https://[::ffff:169.254.169.254]/"]
)
async def test_registering_a_metadata_url_is_refused_on_the_embedded_stack_too(url: str) -> None:
    with pytest.raises(TargetRefused, match="link-local or cloud metadata"):
        await check_target(url, allow_private=True)
    await check_target("http://127.0.0.1:9/hook", allow_private=True)
