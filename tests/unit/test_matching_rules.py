"""The matching workflow's rules on plain values: who may do what, a need's lifecycle, a match's transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.auth import Principal, Role
from services.common.errors import Conflict, Forbidden, ValidationFailed
from services.matching import rules
from services.matching.model import MatchStatus, NeedPatch, NeedRead, NeedStatus, Perimeter
from services.matching.scoring import ActorProfile, Reason, Result

AUTHORITY, OTHER_AUTHORITY, ACTOR = "authority-1", "authority-2", "actor-1"
ADMIN = Principal("admin", Role.ADMIN)
PARTNER = Principal("partner", Role.PARTNER)
OWNER = Principal("mairie", Role.COLLECTIVITY, AUTHORITY)
NEIGHBOUR = Principal("voisine", Role.COLLECTIVITY, OTHER_AUTHORITY)
MATCHED = Principal("asso", Role.ACTOR, ACTOR)
STRANGER = Principal("autre", Role.ACTOR, "actor-2")
NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)


class TestWhoPublishes:
    def test_an_authority_publishes_for_itself_whether_or_not_it_names_itself(self) -> None:
        assert rules.publishing_owner(OWNER, None) == AUTHORITY
        assert rules.publishing_owner(OWNER, AUTHORITY) == AUTHORITY

    def test_an_authority_does_not_publish_for_another(self) -> None:
        with pytest.raises(Forbidden, match="its own needs only"):
            rules.publishing_owner(OWNER, OTHER_AUTHORITY)

    def test_an_admin_names_the_authority(self) -> None:
        assert rules.publishing_owner(ADMIN, OTHER_AUTHORITY) == OTHER_AUTHORITY
        with pytest.raises(ValidationFailed) as refused:
            rules.publishing_owner(ADMIN, None)
        assert (refused.value.field, refused.value.extra["rule"]) == ("owner_id", "required")

    @pytest.mark.parametrize("caller", [PARTNER, MATCHED])
    def test_partners_and_actors_do_not_publish(self, caller: Principal) -> None:
        with pytest.raises(Forbidden, match="only a local authority"):
            rules.publishing_owner(caller, None)

    def test_the_owner_is_an_active_local_authority_of_the_replica(self) -> None:
        rules.check_publisher(AUTHORITY, "local_authority", "active")
        for kind, status in [("association", "active"), ("local_authority", "archived"), (None, None)]:
            with pytest.raises(ValidationFailed) as refused:
                rules.check_publisher(AUTHORITY, kind, status)
            assert refused.value.extra["rule"] == "exists"


class TestWhoActs:
    def test_the_owner_or_an_admin_edits_closes_and_selects(self) -> None:
        rules.require_owner(OWNER, AUTHORITY)
        rules.require_owner(ADMIN, AUTHORITY)
        for caller in (NEIGHBOUR, PARTNER, MATCHED):
            with pytest.raises(Forbidden):
                rules.require_owner(caller, AUTHORITY)

    def test_an_actor_bound_to_the_owner_id_is_not_its_authority(self) -> None:
        # Only the collectivity role acts as a need's owner, even with the owner's actor id.
        with pytest.raises(Forbidden):
            rules.require_owner(Principal("x", Role.ACTOR, AUTHORITY), AUTHORITY)

    def test_the_matched_actor_or_an_admin_answers(self) -> None:
        rules.require_matched_actor(MATCHED, ACTOR, "responds to")
        rules.require_matched_actor(ADMIN, ACTOR, "responds to")
        with pytest.raises(Forbidden, match="only the matched actor responds to its match"):
            rules.require_matched_actor(STRANGER, ACTOR, "responds to")
        with pytest.raises(Forbidden):
            rules.require_matched_actor(OWNER, ACTOR, "marks")

    def test_who_reads_matches(self) -> None:
        assert [rules.can_read_need_matches(p, AUTHORITY) for p in (ADMIN, PARTNER, OWNER, NEIGHBOUR, MATCHED)] == [
            True,
            True,
            True,
            False,
            False,
        ]
        assert [rules.can_read_actor_matches(p, ACTOR) for p in (ADMIN, PARTNER, MATCHED, STRANGER, OWNER)] == [
            True,
            True,
            True,
            False,
            False,
        ]
        assert rules.can_read_match(MATCHED, AUTHORITY, ACTOR)
        assert rules.can_read_match(OWNER, AUTHORITY, ACTOR)
        assert not rules.can_read_match(STRANGER, AUTHORITY, ACTOR)
        assert not rules.can_read_match(NEIGHBOUR, AUTHORITY, ACTOR)

    def test_webhooks_are_for_partners_and_admins(self) -> None:
        rules.require_partner(PARTNER)
        rules.require_partner(ADMIN)
        for caller in (OWNER, MATCHED):
            with pytest.raises(Forbidden):
                rules.require_partner(caller)


class TestNeedLifecycle:
    def test_a_need_is_matched_while_published_and_before_its_deadline(self) -> None:
        assert rules.is_open(NeedStatus.published, NOW + timedelta(seconds=1), NOW)
        assert not rules.is_open(NeedStatus.published, NOW, NOW)
        for status in set(NeedStatus) - {NeedStatus.published}:
            assert not rules.is_open(status, NOW + timedelta(days=1), NOW)

    def test_only_an_open_need_at_the_version_read_is_edited(self) -> None:
        rules.check_editable(NeedStatus.published, "n1", 3, 3)
        with pytest.raises(Conflict) as stale:
            rules.check_editable(NeedStatus.published, "n1", 4, 3)
        assert (stale.value.field, stale.value.extra["rule"], stale.value.extra["current_version"]) == (
            "If-Match",
            "stale",
            4,
        )
        with pytest.raises(Conflict) as closed:
            rules.check_editable(NeedStatus.closed, "n1", 3, 3)  # the state speaks before the version
        assert str(closed.value) == "the need is closed: only an open need is edited"
        assert closed.value.extra["rule"] == "open"

    def test_only_an_open_need_is_closed(self) -> None:
        rules.check_closable(NeedStatus.published)
        for status in set(NeedStatus) - {NeedStatus.published}:
            with pytest.raises(Conflict, match=f"the need is already {status.value}"):
                rules.check_closable(status)


class TestMatchTransitions:
    def test_viewing_marks_an_unseen_match_viewed_once(self) -> None:
        assert rules.viewed(MatchStatus.notified) == MatchStatus.viewed
        assert rules.viewed(MatchStatus.proposed) == MatchStatus.viewed
        for status in set(MatchStatus) - {MatchStatus.notified, MatchStatus.proposed}:
            assert rules.viewed(status) is None

    def test_viewing_a_match_again_changes_nothing(self) -> None:
        # None is what keeps the use case from writing and from publishing a second `match.viewed`.
        first = rules.viewed(MatchStatus.notified)
        assert first == MatchStatus.viewed
        assert rules.viewed(first) is None

    @pytest.mark.parametrize(
        "status", [MatchStatus.proposed, MatchStatus.notified, MatchStatus.viewed, MatchStatus.interested]
    )
    @pytest.mark.parametrize("response", [MatchStatus.interested, MatchStatus.declined])
    def test_a_pending_match_of_an_open_need_is_answered(self, status: MatchStatus, response: MatchStatus) -> None:
        assert rules.check_response(status, NeedStatus.published, response) == response

    @pytest.mark.parametrize("status", [MatchStatus.declined, MatchStatus.selected, MatchStatus.withdrawn])
    def test_a_decided_match_is_not_answered(self, status: MatchStatus) -> None:
        with pytest.raises(Conflict, match=f"this match is {status.value} and its need published"):
            rules.check_response(status, NeedStatus.published, MatchStatus.interested)

    def test_a_match_of_a_closed_need_is_not_answered(self) -> None:
        with pytest.raises(Conflict) as refused:
            rules.check_response(MatchStatus.viewed, NeedStatus.expired, MatchStatus.interested)
        assert str(refused.value) == "this match is viewed and its need expired"

    def test_a_response_is_interested_or_declined(self) -> None:
        with pytest.raises(ValueError, match="interested or declined"):
            rules.check_response(MatchStatus.viewed, NeedStatus.published, MatchStatus.selected)

    def test_only_an_interested_match_is_selected(self) -> None:
        assert rules.check_selection(MatchStatus.interested) == MatchStatus.selected
        for status in set(MatchStatus) - {MatchStatus.interested}:
            with pytest.raises(Conflict, match=f"this one is {status.value}"):
                rules.check_selection(status)

    def test_closing_withdraws_the_pending_matches_only(self) -> None:
        assert {MatchStatus.proposed, MatchStatus.notified, MatchStatus.viewed, MatchStatus.interested} == rules.PENDING
        assert not rules.PENDING & {MatchStatus.declined, MatchStatus.selected, MatchStatus.withdrawn}


def actor(actor_id: str) -> ActorProfile:
    return ActorProfile(
        id=actor_id,
        name=actor_id,
        kind="association",
        themes=frozenset(),
        service_types=frozenset(),
        territories=frozenset(),
        lat=None,
        lon=None,
    )


class TestWhichMatches:
    def test_new_matches_are_announced_until_enough_actors_said_yes(self) -> None:
        assert rules.new_match_status(0, 3) == MatchStatus.notified
        assert rules.new_match_status(2, 3) == MatchStatus.notified
        assert rules.new_match_status(3, 3) == MatchStatus.proposed
        assert rules.new_match_status(4, 3) == MatchStatus.proposed
        assert rules.announced(MatchStatus.notified)
        assert not rules.announced(MatchStatus.proposed)

    def test_interested_and_selected_actors_said_yes(self) -> None:
        statuses = [
            MatchStatus.interested,
            MatchStatus.selected,
            MatchStatus.declined,
            MatchStatus.viewed,
            MatchStatus.interested,
            MatchStatus.withdrawn,
        ]
        assert rules.count_yes(statuses) == 3
        assert rules.count_yes([]) == 0

    def test_an_eligible_actor_at_the_minimum_score_is_kept(self) -> None:
        reasons = [Reason("theme", "thème commun", 0.5)]
        assert rules.kept(Result(0.4, reasons), 0.4)
        assert not rules.kept(Result(0.39, reasons), 0.4)
        assert not rules.kept(Result(0.0, reasons), 0.0)  # ineligible: score 0

    def test_the_top_k_are_the_best_scores_ties_by_actor_id(self) -> None:
        scored: list[rules.Scored] = [(actor("c"), 0.5, []), (actor("b"), 0.9, []), (actor("a"), 0.5, [])]
        assert [(a.id, s) for a, s, _ in rules.top(scored, 2)] == [("b", 0.9), ("a", 0.5)]
        assert [a.id for a, _, _ in rules.top(scored, 5)] == ["b", "a", "c"]

    def test_a_newcomer_joins_when_it_ranks_in_the_top_k(self) -> None:
        assert rules.ranks_in_top(0.1, [0.9, 0.8], 3)  # room left
        assert rules.ranks_in_top(0.85, [0.9, 0.8, 0.7], 3)
        assert rules.ranks_in_top(0.71, [0.9, 0.8, 0.7, 0.6], 3)
        assert not rules.ranks_in_top(0.7, [0.9, 0.8, 0.7], 3)  # a tie with the k-th stays out
        assert not rules.ranks_in_top(0.5, [0.7, 0.9, 0.8], 3)  # unordered scores


class TestPatchedNeed:
    @staticmethod
    def current() -> NeedRead:
        now = datetime.now(UTC)
        return NeedRead(
            id="00000000-0000-0000-0000-000000000001",
            version=3,
            owner_id="00000000-0000-0000-0000-000000000002",
            title="Une ressourcerie",
            description="Collecte et revente",
            kind="partnership",
            themes=["reemploi"],
            service_types=[],
            commune_code="25056",
            location={"lat": 47.2, "lon": 6.0},
            perimeter={"territories": ["DEP-25"], "radius_km": None},
            effective_perimeter=["DEP-25"],
            eligible_kinds=[],
            budget_min=1000,
            budget_max=None,
            deadline=now + timedelta(days=10),
            qpv_priority=False,
            status=NeedStatus.published,
            created_at=now,
            updated_at=now,
        )

    def test_the_fields_given_replace_theirs_and_the_others_are_kept(self) -> None:
        edited = rules.patched_need(self.current(), NeedPatch(title="Un atelier vélo", budget_max=5000))
        assert (edited.title, edited.budget_min, edited.budget_max) == ("Un atelier vélo", 1000, 5000)
        assert edited.perimeter.territories == ["DEP-25"] and edited.description == "Collecte et revente"

    def test_a_rule_across_fields_sees_the_stored_values(self) -> None:
        with pytest.raises(ValidationFailed) as refused:
            rules.patched_need(self.current(), NeedPatch(budget_max=10))
        assert refused.value.field == "budget_max"

    def test_a_null_removes_an_optional_value_and_a_field_not_given_keeps_its_own(self) -> None:
        current = self.current().model_copy(update={"service_types": ["fourniture_biens"], "eligible_kinds": ["siae"]})
        patch = NeedPatch.model_validate(
            {"budget_min": None, "description": None, "service_types": None, "eligible_kinds": None}
        )
        edited = rules.patched_need(current, patch)
        assert (edited.budget_min, edited.description) == (None, "")
        assert (edited.service_types, edited.eligible_kinds) == ([], [])
        assert edited.title == "Une ressourcerie" and edited.perimeter.territories == ["DEP-25"]
        radius = rules.patched_need(
            current.model_copy(update={"perimeter": Perimeter(territories=["DEP-25"], radius_km=20)}),
            NeedPatch.model_validate({"perimeter": {"territories": ["DEP-25"], "radius_km": None}}),
        )
        assert (radius.perimeter.territories, radius.perimeter.radius_km) == (["DEP-25"], None)

    @pytest.mark.parametrize(
        "field", ["title", "kind", "themes", "commune_code", "location", "perimeter", "deadline", "qpv_priority"]
    )
    def test_a_null_on_a_required_field_is_refused(self, field: str) -> None:
        with pytest.raises(ValueError, match="changed, not removed"):
            NeedPatch.model_validate({field: None})

    def test_an_empty_patch_and_a_removed_required_field_are_refused(self) -> None:
        with pytest.raises(ValidationFailed) as empty:
            rules.patched_need(self.current(), NeedPatch())
        assert empty.value.extra["rule"] == "not_empty"
        with pytest.raises(ValueError, match="changed, not removed"):
            NeedPatch.model_validate({"title": None})

    def test_a_stale_version_is_a_conflict_and_none_means_the_current_one(self) -> None:
        rules.check_version("n", None, 3)
        rules.check_version("n", 3, 3)
        with pytest.raises(Conflict):
            rules.check_version("n", 2, 3)
