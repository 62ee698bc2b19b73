"""The SQL that registers under the event's row lock (`register_participant`) decides as `rules.admission` says."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.events import rules, store
from services.events.model import EventStatus, Refusal, RegistrationMode
from tests.integration.directory_fixtures import Directory
from tests.integration.events_fixtures import Events
from tests.integration.test_events import new_event, organizers

pytestmark = pytest.mark.asyncio

# (capacity, confirmed, waitlisted): free seats, full, a seat free while someone waits, no limit, no seat at all.
SEATS = [(2, 0, 0), (2, 1, 0), (2, 2, 0), (2, 2, 3), (2, 1, 1), (None, 7, 0), (None, 7, 2), (0, 0, 0)]


async def test_every_registration_outcome_of_the_sql_is_the_rules(directory: Directory, events: Events) -> None:
    who = await organizers(directory, events)
    event_id = uuid.UUID((await new_event(events, who["city"]["id"], capacity=2))["id"])
    conn = await asyncpg.connect(events.database_url)
    checked = 0
    try:
        outer = conn.transaction()
        await outer.start()  # every case is rolled back: the event and its counts are left as they were
        try:
            for status, mode, (capacity, confirmed, waitlisted), started in itertools.product(
                EventStatus, RegistrationMode, SEATS, (False, True)
            ):
                case = conn.transaction()
                await case.start()
                starts = datetime.now(UTC) + timedelta(days=-1 if started else 1)
                await conn.execute(
                    """UPDATE events SET status = $2, registration_mode = $3, capacity = $4, confirmed = $5,
                           waitlisted = $6, starts_at = $7, ends_at = $8 WHERE id = $1""",
                    event_id,
                    status.value,
                    mode.value,
                    capacity,
                    confirmed,
                    waitlisted,
                    starts,
                    starts + timedelta(days=2),
                )
                row = await store.get_event(conn, event_id)
                assert row is not None
                expected = rules.admission(store.event_state(row), datetime.now(UTC))
                outcome, registration, _ = await store.register(
                    conn,
                    event_id,
                    actor_id=None,
                    person_name="Claude Dupont",
                    person_email=f"{uuid.uuid4().hex[:8]}@example.org",
                    comment=None,
                    created_by="rules-test",
                )
                assert outcome == expected, (status, mode, capacity, confirmed, waitlisted, started)
                assert (registration is None) == isinstance(expected, Refusal)
                await case.rollback()
                checked += 1
        finally:
            await outer.rollback()
    finally:
        await conn.close()
    assert checked == len(EventStatus) * len(RegistrationMode) * len(SEATS) * 2
