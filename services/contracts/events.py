"""Event payload models: versioned pydantic classes, one per CloudEvents type, shared by producers and consumers."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

TYPE_PREFIX = "org.maillage."


class EventPayload(BaseModel):
    """Base of every payload: unknown fields are ignored so producers can add fields safely."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ce_type: ClassVar[str]
    topic: ClassVar[str]


PayloadT = TypeVar("PayloadT", bound=type[EventPayload])

REGISTRY: dict[str, type[EventPayload]] = {}


def event_type(ce_type: str, topic: str) -> Callable[[PayloadT], PayloadT]:
    """Decorator registering a payload model under its CloudEvents type and topic."""

    def register(cls: PayloadT) -> PayloadT:
        if ce_type in REGISTRY and REGISTRY[ce_type] is not cls:
            raise ValueError(f"event type {ce_type} registered twice")
        cls.ce_type = ce_type
        cls.topic = topic
        REGISTRY[ce_type] = cls
        return cls

    return register
