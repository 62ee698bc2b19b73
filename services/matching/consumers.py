"""The matching service's Kafka consumers (none yet: its issue adds them)."""

from __future__ import annotations

import asyncpg

from services.common.consumer import IdempotentConsumer
from services.common.settings import Settings


def build_consumers(pool: asyncpg.Pool, settings: Settings) -> list[IdempotentConsumer]:
    return []
