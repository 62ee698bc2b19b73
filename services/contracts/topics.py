"""The topic plan: every Kafka topic, its partitions, the key that keeps related events in order, its durability.

The embedded stack and the production init job both create topics from this one list; docker-compose.yml's
broker defaults follow its durability rule (tests/unit/test_deploy.py).
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


def min_insync_replicas(replication_factor: int) -> int:
    """Replicas that must hold a write before the broker acknowledges it (`acks=all`): a majority.

    A minority of a partition's replicas may be down without an acknowledged write being on too few of them;
    with more down, the broker refuses writes and the outbox keeps them until it accepts them again, so
    durability wins over the producer's availability at no cost to the services.
    """
    if replication_factor < 1:
        raise ValueError("a topic has at least one replica")
    return replication_factor // 2 + 1


def topic_config(replication_factor: int) -> dict[str, str]:
    """The configuration every topic of the plan (dead letters too) is created with."""
    return {"min.insync.replicas": str(min_insync_replicas(replication_factor))}


def topic_plan(*, with_dlq: bool = True) -> list[tuple[str, int]]:
    """(name, partitions) of every topic to create, dead-letter topics included."""
    plan = [(spec.name, spec.partitions) for spec in TOPICS]
    if with_dlq:
        plan += [(spec.dlq, 1) for spec in TOPICS]
    return plan
