"""The gateway's credential cache serves a row only while it hears of every change, and never a row older than one."""

from __future__ import annotations

import time
import uuid

from gateway.auth import CredentialCache, CredentialState

KEPT = CredentialState(revoked=False, rate_limit_per_minute=120)


def listening(cache: CredentialCache) -> CredentialCache:
    cache.heard_until = time.monotonic() + 60
    return cache


def test_a_row_is_served_while_the_replica_hears_of_changes() -> None:
    cache = listening(CredentialCache())
    credential = uuid.uuid4()
    cache.put(credential, KEPT, cache.generation)
    assert cache.get(credential) == KEPT
    assert cache.get(uuid.uuid4()) is None


def test_nothing_is_kept_or_served_while_changes_are_unheard() -> None:
    cache = CredentialCache()  # the listening connection has not answered yet
    credential = uuid.uuid4()
    cache.put(credential, KEPT, cache.generation)
    assert cache.entries == {}
    listening(cache).put(credential, KEPT, cache.generation)
    cache.heard_until = time.monotonic() - 1  # the last check is too old: the connection may be dead
    assert cache.get(credential) is None


def test_a_change_heard_drops_the_credential_and_a_row_read_before_it_is_not_kept() -> None:
    cache = listening(CredentialCache())
    revoked, other = uuid.uuid4(), uuid.uuid4()
    cache.put(revoked, KEPT, cache.generation)
    cache.put(other, KEPT, cache.generation)
    read_at = cache.generation
    cache._heard(None, 0, "maillage_credentials", str(revoked))
    assert cache.get(revoked) is None and cache.get(other) == KEPT
    cache.put(revoked, KEPT, read_at)  # read before the change was heard: it may be stale
    assert cache.get(revoked) is None
    cache._heard(None, 0, "maillage_credentials", "not an id")
    assert cache.entries == {}


def test_an_entry_expires_after_its_time_to_live() -> None:
    cache = listening(CredentialCache(ttl_s=0.0))
    credential = uuid.uuid4()
    cache.put(credential, KEPT, cache.generation)
    time.sleep(0.001)
    assert cache.get(credential) is None
