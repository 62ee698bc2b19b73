"""The events workflow's rules on plain values: who may do what, an event's lifecycle, seats and the waiting list."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.common.auth import Principal, Role
from services.common.errors import Conflict, Forbidden, MaillageError, NotFound, ValidationFailed
from services.events import rules
from services.events.model import (
    ActorStatus,
    EventState,
    EventStatus,
    ParticipantKind,
    Refusal,
    RegistrationMode,
    RegistrationState,
    RegistrationStatus,
    ReplicaActor,
)

NOW = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
ORGANIZER = str(uuid.uuid4())
OTHER = str(uuid.uuid4())

ADMIN = Principal(subject="root", role=Role.ADMIN)
PARTNER = Principal(subject="partner-1", role=Role.PARTNER)
ORGANIZER_ACTOR = Principal(subject="org", role=Role.ACTOR, actor_id=ORGANIZER)
ORGANIZER_CITY = Principal(subject="city", role=Role.COLLECTIVITY, actor_id=ORGANIZER)
OTHER_ACTOR = Principal(subject="other", role=Role.ACTOR, actor_id=OTHER)


def event(**changes: object) -> EventState:
    base = EventState(
        id=uuid.uuid4(),
        status=EventStatus.published,
        organizer_ids=(ORGANIZER,),
        registration_mode=RegistrationMode.open,
        capacity=10,
        confirmed=0,
        waitlisted=0,
        starts_at=NOW + timedelta(days=7),
        ends_at=NOW + timedelta(days=7, hours=3),
        version=1,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def registration(**changes: object) -> RegistrationState:
    base = RegistrationState(
        id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        status=RegistrationStatus.confirmed,
        participant_kind=ParticipantKind.person,
        actor_id=None,
        created_by="partner-1",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def rule_of(error: MaillageError) -> object:
    return error.extra.get("rule")


class TestWhoManagesAnEvent:
    @pytest.mark.parametrize(
        ("principal", "expected"),
        [
            (ADMIN, True),
            (ORGANIZER_ACTOR, True),
            (ORGANIZER_CITY, True),
            (OTHER_ACTOR, False),
            (PARTNER, False),
            (None, False),
        ],
    )
    def test_admins_and_the_organizers_callers_manage(self, principal: Principal | None, expected: bool) -> None:
        assert rules.manages(principal, [ORGANIZER]) is expected

    def test_a_partner_bound_to_nobody_does_not_manage_even_when_its_subject_matches(self) -> None:
        assert not rules.manages(Principal(subject=ORGANIZER, role=Role.PARTNER), [ORGANIZER])

    def test_require_manager_refuses_with_the_reason(self) -> None:
        with pytest.raises(Forbidden, match="organizers"):
            rules.require_manager(OTHER_ACTOR, event())
        rules.require_manager(ORGANIZER_ACTOR, event())

    def test_an_event_is_created_by_one_of_its_organizers(self) -> None:
        with pytest.raises(Forbidden):
            rules.require_organizer(OTHER_ACTOR, [ORGANIZER])
        rules.require_organizer(OTHER_ACTOR, [ORGANIZER, OTHER])


class TestWhoSeesWhat:
    def test_a_draft_exists_only_for_its_managers(self) -> None:
        draft = event(status=EventStatus.draft)
        assert not rules.may_see(None, draft)
        assert not rules.may_see(OTHER_ACTOR, draft)
        assert rules.may_see(ORGANIZER_ACTOR, draft)
        assert rules.may_see(ADMIN, draft)

    @pytest.mark.parametrize("status", [EventStatus.published, EventStatus.cancelled])
    def test_a_published_or_cancelled_event_is_seen_by_everyone(self, status: EventStatus) -> None:
        assert rules.may_see(None, event(status=status))

    def test_persons_are_shown_to_the_managers_only(self) -> None:
        assert rules.may_see_person(ORGANIZER_CITY, event())
        assert not rules.may_see_person(PARTNER, event())
        assert not rules.may_see_person(None, event())

    def test_an_organizers_listing_shows_its_drafts_to_itself_only(self) -> None:
        organizer = uuid.UUID(ORGANIZER)
        assert EventStatus.draft in rules.listed_statuses(ORGANIZER_ACTOR, organizer)
        assert rules.listed_statuses(OTHER_ACTOR, organizer) == [EventStatus.published, EventStatus.cancelled]
        assert rules.listed_statuses(None, organizer) == [EventStatus.published, EventStatus.cancelled]

    def test_a_search_never_lists_drafts(self) -> None:
        assert rules.searched_statuses(False) == [EventStatus.published]
        assert rules.searched_statuses(True) == [EventStatus.published, EventStatus.cancelled]


class TestOrganizersAndRegisteredActors:
    def test_every_organizer_must_be_an_active_actor_of_the_replica(self) -> None:
        active = ReplicaActor(id=uuid.UUID(ORGANIZER), name="Ville", status=ActorStatus.active)
        archived = ReplicaActor(id=uuid.UUID(OTHER), name="Asso", status=ActorStatus.archived)
        rules.check_organizers([ORGANIZER], {active.id: active})
        with pytest.raises(ValidationFailed) as unknown:
            rules.check_organizers([ORGANIZER, OTHER], {active.id: active})
        assert (unknown.value.field, rule_of(unknown.value)) == ("organizer_ids", "exists")
        with pytest.raises(ValidationFailed, match="Asso is archived") as gone:
            rules.check_organizers([ORGANIZER, OTHER], {active.id: active, archived.id: archived})
        assert rule_of(gone.value) == "active"

    def test_an_actor_registers_itself_and_organizers_register_any_active_actor(self) -> None:
        other = ReplicaActor(id=uuid.UUID(OTHER), name="Asso", status=ActorStatus.active)
        rules.require_actor_registration(OTHER_ACTOR, OTHER, other, event())
        rules.require_actor_registration(ORGANIZER_ACTOR, OTHER, other, event())
        with pytest.raises(Forbidden):
            rules.require_actor_registration(PARTNER, OTHER, other, event())

    @pytest.mark.parametrize("actor", [None, ReplicaActor(id=uuid.UUID(OTHER), name="Asso", status="archived")])
    def test_an_unknown_or_archived_actor_is_not_registered(self, actor: ReplicaActor | None) -> None:
        with pytest.raises(ValidationFailed) as refused:
            rules.require_actor_registration(OTHER_ACTOR, OTHER, actor, event())
        assert (refused.value.field, rule_of(refused.value)) == ("actor_id", "exists")


class TestWhoCancelsARegistration:
    def test_the_events_managers_cancel_any(self) -> None:
        assert rules.may_cancel(ORGANIZER_CITY, registration(created_by="someone"), event())

    def test_the_registered_actors_callers_cancel_it(self) -> None:
        mine = registration(participant_kind=ParticipantKind.actor, actor_id=OTHER, created_by="org")
        assert rules.may_cancel(OTHER_ACTOR, mine, event())
        assert not rules.may_cancel(PARTNER, mine, event())

    def test_the_caller_who_registered_a_person_cancels_it(self) -> None:
        assert rules.may_cancel(PARTNER, registration(created_by=PARTNER.subject), event())
        assert not rules.may_cancel(PARTNER, registration(created_by="someone else"), event())
        assert not rules.may_cancel(None, registration(), event())

    def test_a_valid_link_cancels_without_an_account(self) -> None:
        rules.require_canceller(None, registration(), event(), by_token=True)
        with pytest.raises(Forbidden):
            rules.require_canceller(None, registration(), event(), by_token=False)

    def test_partners_read_registrations_they_may_not_cancel(self) -> None:
        rules.require_reader(PARTNER, registration(created_by="someone else"), event())
        with pytest.raises(Forbidden):
            rules.require_reader(OTHER_ACTOR, registration(created_by="someone else"), event())


class TestLifecycle:
    def test_draft_published_cancelled_and_nothing_after(self) -> None:
        assert rules.may_move(EventStatus.draft, EventStatus.published)
        assert rules.may_move(EventStatus.draft, EventStatus.cancelled)
        assert rules.may_move(EventStatus.published, EventStatus.cancelled)
        assert not rules.may_move(EventStatus.published, EventStatus.draft)
        assert not rules.may_move(EventStatus.published, EventStatus.published)
        assert not any(rules.may_move(EventStatus.cancelled, to) for to in EventStatus)

    def test_an_event_is_created_as_a_draft_unless_published_at_once(self) -> None:
        assert rules.created_status(False) == EventStatus.draft
        assert rules.created_status(True) == EventStatus.published

    def test_an_event_already_over_is_not_created(self) -> None:
        with pytest.raises(ValidationFailed) as over:
            rules.check_creatable(NOW, NOW)
        assert (over.value.field, rule_of(over.value)) == ("ends_at", "future")
        rules.check_creatable(NOW + timedelta(seconds=1), NOW)

    def test_only_a_draft_not_over_is_published(self) -> None:
        rules.check_publishable(event(status=EventStatus.draft), NOW)
        with pytest.raises(Conflict, match="already published") as again:
            rules.check_publishable(event(status=EventStatus.published), NOW)
        assert rule_of(again.value) == "draft"
        with pytest.raises(Conflict) as over:
            rules.check_publishable(event(status=EventStatus.draft, ends_at=NOW - timedelta(minutes=1)), NOW)
        assert (over.value.field, rule_of(over.value)) == ("ends_at", "future")

    def test_a_cancelled_event_is_not_cancelled_again(self) -> None:
        rules.check_cancellable(event(status=EventStatus.draft))
        rules.check_cancellable(event(status=EventStatus.published))
        with pytest.raises(Conflict) as again:
            rules.check_cancellable(event(status=EventStatus.cancelled))
        assert rule_of(again.value) == "cancelled"

    def test_an_edit_is_made_on_the_current_version_of_an_event_not_cancelled(self) -> None:
        rules.check_editable(event(version=3), 3, "e")
        with pytest.raises(Conflict) as stale:
            rules.check_editable(event(version=4), 3, "e")
        assert rule_of(stale.value) == "stale" and stale.value.extra["current_version"] == 4
        with pytest.raises(Conflict) as cancelled:
            rules.check_editable(event(status=EventStatus.cancelled, version=4), 3, "e")
        assert rule_of(cancelled.value) == "cancelled", "a cancelled event says so before any version mismatch"

    @pytest.mark.parametrize(("capacity", "allowed"), [(None, True), (5, True), (6, True), (4, False)])
    def test_a_capacity_never_drops_below_the_seats_given(self, capacity: int | None, allowed: bool) -> None:
        if allowed:
            rules.check_capacity(capacity, 5)
        else:
            with pytest.raises(Conflict, match="below the 5 confirmed") as below:
                rules.check_capacity(capacity, 5)
            assert (below.value.field, rule_of(below.value)) == ("capacity", "below_confirmed")

    def test_only_a_published_events_changes_are_announced(self) -> None:
        assert rules.announced(EventStatus.published)
        assert not rules.announced(EventStatus.draft)
        assert not rules.announced(EventStatus.cancelled)


class TestSeats:
    @pytest.mark.parametrize(
        ("capacity", "confirmed", "waitlisted", "expected"),
        [
            (None, 500, 0, RegistrationStatus.confirmed),
            (2, 0, 0, RegistrationStatus.confirmed),
            (2, 1, 0, RegistrationStatus.confirmed),
            (2, 2, 0, RegistrationStatus.waitlisted),
            (2, 1, 1, RegistrationStatus.waitlisted),  # someone waits: nobody jumps the line
            (0, 0, 0, RegistrationStatus.waitlisted),
        ],
    )
    def test_a_seat_while_one_is_free_and_nobody_waits(
        self, capacity: int | None, confirmed: int, waitlisted: int, expected: RegistrationStatus
    ) -> None:
        assert rules.seat_for(capacity, confirmed, waitlisted) == expected

    def test_a_new_registration_of_an_open_event_takes_a_seat_or_waits(self) -> None:
        assert rules.admission(event(capacity=1), NOW) == RegistrationStatus.confirmed
        assert rules.admission(event(capacity=1, confirmed=1), NOW) == RegistrationStatus.waitlisted

    def test_an_approval_event_holds_every_registration_pending_even_when_full(self) -> None:
        full = event(registration_mode=RegistrationMode.approval, capacity=1, confirmed=1)
        assert rules.admission(full, NOW) == RegistrationStatus.pending

    @pytest.mark.parametrize(
        ("changes", "refusal"),
        [
            ({"status": EventStatus.draft}, Refusal.not_published),
            ({"status": EventStatus.cancelled}, Refusal.not_published),
            ({"registration_mode": RegistrationMode.closed}, Refusal.closed),
            ({"starts_at": NOW}, Refusal.started),
            ({"status": EventStatus.draft, "registration_mode": RegistrationMode.closed}, Refusal.not_published),
        ],
    )
    def test_a_registration_is_refused_when_the_event_does_not_take_it(
        self, changes: dict[str, object], refusal: Refusal
    ) -> None:
        assert rules.admission(event(**changes), NOW) == refusal

    def test_each_refusal_answers_its_error(self) -> None:
        duplicate_actor = rules.refusal_error(Refusal.duplicate, "e", ParticipantKind.actor)
        duplicate_person = rules.refusal_error(Refusal.duplicate, "e", ParticipantKind.person)
        assert isinstance(duplicate_actor, Conflict) and duplicate_actor.field == "actor_id"
        assert duplicate_person.field == "person.email" and rule_of(duplicate_person) == "unique"
        assert isinstance(rules.refusal_error(Refusal.no_event, "e", ParticipantKind.person), NotFound)
        started = rules.refusal_error(Refusal.started, "e", ParticipantKind.person)
        assert isinstance(started, Conflict) and (started.field, rule_of(started)) == ("starts_at", "not_started")
        closed = rules.refusal_error(Refusal.closed, "e", ParticipantKind.person)
        assert (closed.field, rule_of(closed)) == ("registration_mode", "closed")


class TestPromotion:
    @pytest.mark.parametrize(
        ("capacity", "confirmed", "waitlisted", "promoted"),
        [
            (None, 3, 4, 4),  # no limit any more: everybody waiting gets in
            (5, 3, 4, 2),
            (5, 4, 1, 1),
            (5, 5, 4, 0),
            (5, 3, 0, 0),
        ],
    )
    def test_the_free_seats_go_to_the_first_in_line(
        self, capacity: int | None, confirmed: int, waitlisted: int, promoted: int
    ) -> None:
        assert rules.seats_to_fill(capacity, confirmed, waitlisted) == promoted

    def test_only_a_confirmed_registration_frees_a_seat(self) -> None:
        assert rules.frees_a_seat(RegistrationStatus.confirmed)
        assert not any(rules.frees_a_seat(s) for s in RegistrationStatus if s != RegistrationStatus.confirmed)

    @pytest.mark.parametrize("status", [RegistrationStatus.cancelled, RegistrationStatus.rejected])
    def test_a_registration_is_cancelled_once_and_only_while_live(self, status: RegistrationStatus) -> None:
        with pytest.raises(Conflict, match=f"already {status}") as again:
            rules.check_live(registration(status=status))
        assert rule_of(again.value) == "live"
        rules.check_live(registration(status=RegistrationStatus.waitlisted))


class TestDecisions:
    def test_only_a_pending_registration_is_decided(self) -> None:
        with pytest.raises(Conflict, match="is confirmed, not pending"):
            rules.decided_status(registration(status=RegistrationStatus.confirmed), event(), approve=False)

    def test_a_rejection_needs_no_seat(self) -> None:
        pending = registration(status=RegistrationStatus.pending)
        cancelled = event(status=EventStatus.cancelled, capacity=1, confirmed=1)
        assert rules.decided_status(pending, cancelled, approve=False) == RegistrationStatus.rejected

    def test_an_approval_gives_a_seat_or_a_place_in_line(self) -> None:
        pending = registration(status=RegistrationStatus.pending)
        assert rules.decided_status(pending, event(capacity=1), approve=True) == RegistrationStatus.confirmed
        full = event(capacity=1, confirmed=1)
        assert rules.decided_status(pending, full, approve=True) == RegistrationStatus.waitlisted

    def test_an_approval_needs_a_published_event(self) -> None:
        pending = registration(status=RegistrationStatus.pending)
        with pytest.raises(Conflict, match="is cancelled") as refused:
            rules.decided_status(pending, event(status=EventStatus.cancelled), approve=True)
        assert rule_of(refused.value) == "published"
