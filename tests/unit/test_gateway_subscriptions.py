"""What each subscriber of the match feed receives: its event types, its needs or matches, each event once."""

from __future__ import annotations

from gateway.subscriptions import FOUND, UPDATED, MatchFeed
from services.common.auth import Principal, Role
from services.common.envelope import CloudEvent
from services.common.settings import Settings
from services.contracts.events import (
    MatchFound,
    MatchResponded,
    MatchSelected,
    MatchV1,
    MatchViewed,
    MatchWithdrawn,
)

NEED, OTHER_NEED = "need-1", "need-2"


def match(status: str, *, need_id: str = NEED, actor_id: str = "actor-1", updated_at: str = "2026-12-02") -> MatchV1:
    return MatchV1(
        id=f"match-{need_id}-{actor_id}",
        need_id=need_id,
        actor_id=actor_id,
        owner_id="city-1",
        need_title="Un besoin",
        score=0.8,
        status=status,
        updated_at=updated_at,
    )


def drained(feed: MatchFeed) -> dict[str, list[tuple[str, str]]]:
    received: dict[str, list[tuple[str, str]]] = {}
    for subscriber in feed.subscribers:
        items = []
        while not subscriber.queue.empty():
            m = subscriber.queue.get_nowait()
            items.append((m.actor_id, m.status))
        received[subscriber.principal.subject] = items
    return received


async def test_match_updated_receives_each_change_once_and_match_found_only_new_matches() -> None:
    feed = MatchFeed(Settings(_env_file=None))
    city = Principal(subject="city", role=Role.COLLECTIVITY, actor_id="city-1")
    actor = Principal(subject="actor", role=Role.ACTOR, actor_id="actor-1")
    stranger = Principal(subject="stranger", role=Role.COLLECTIVITY, actor_id="city-2")
    async with (
        feed.subscribe(city, NEED, UPDATED),
        feed.subscribe(actor, NEED, UPDATED),
        feed.subscribe(stranger, NEED, UPDATED),
        feed.subscribe(Principal(subject="finder", role=Role.ADMIN), None, FOUND),
    ):
        feed.dispatch(match("notified"), MatchFound.ce_type, "e1")
        feed.dispatch(match("viewed"), MatchViewed.ce_type, "e2")
        feed.dispatch(match("interested"), MatchResponded.ce_type, "e3")
        feed.dispatch(match("interested"), MatchResponded.ce_type, "e3")  # the same record read twice
        feed.dispatch(match("selected"), MatchSelected.ce_type, "e4")
        feed.dispatch(match("withdrawn", actor_id="actor-2"), MatchWithdrawn.ce_type, "e5")
        feed.dispatch(match("withdrawn", need_id=OTHER_NEED), MatchWithdrawn.ce_type, "e6")
        received = drained(feed)
    assert received["finder"] == [("actor-1", "notified")]
    assert received["city"] == [
        ("actor-1", "viewed"),
        ("actor-1", "interested"),
        ("actor-1", "selected"),
        ("actor-2", "withdrawn"),
    ]
    assert received["actor"] == [("actor-1", "viewed"), ("actor-1", "interested"), ("actor-1", "selected")]
    assert received["stranger"] == []
    assert not feed.subscribers


async def test_a_viewed_match_read_off_the_topic_reaches_the_needs_owner_and_not_match_found() -> None:
    feed = MatchFeed(Settings(_env_file=None))
    city = Principal(subject="city", role=Role.COLLECTIVITY, actor_id="city-1")
    viewed = MatchViewed(match=match("viewed"))
    record = CloudEvent(type=MatchViewed.ce_type, source="//maillage/matching", data=viewed.model_dump(mode="json"))
    async with feed.subscribe(city, NEED, UPDATED), feed.subscribe(Principal("finder", Role.ADMIN), None, FOUND):
        feed._handle(record.kafka_headers(), record.kafka_value())
        received = drained(feed)
    assert received == {"city": [("actor-1", "viewed")], "finder": []}
