"""The topic plan: every Kafka topic, its partitions and the key that keeps related events in order.

The embedded stack and the production init job both create topics from this one list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    description: str

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.name)


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


ACTOR = "maillage.directory.actor.v1"
EVENT = "maillage.events.event.v1"
REGISTRATION = "maillage.events.registration.v1"
NEED = "maillage.matching.need.v1"
MATCH = "maillage.matching.match.v1"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(ACTOR, 6, "actor id", "Actors registered, updated, archived (full state)"),
    TopicSpec(EVENT, 3, "event id", "Territorial events published, updated, cancelled"),
    TopicSpec(REGISTRATION, 3, "event id", "Registrations confirmed, waitlisted, cancelled"),
    TopicSpec(NEED, 3, "need id", "Needs published, updated, closed"),
    TopicSpec(MATCH, 6, "need id", "Matches found and their lifecycle"),
)


def topic_plan(*, with_dlq: bool = True) -> list[tuple[str, int]]:
    """(name, partitions) of every topic to create, dead-letter topics included."""
    plan = [(spec.name, spec.partitions) for spec in TOPICS]
    if with_dlq:
        plan += [(spec.dlq, 1) for spec in TOPICS]
    return plan
