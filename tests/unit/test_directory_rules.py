"""The directory's rules on plain values (no database): who may do what, versions, archives, patches, imports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.common.auth import Principal, Role, ServiceIdentity
from services.common.errors import Conflict, Forbidden, Unauthenticated, ValidationFailed
from services.directory import rules, store
from services.directory.model import ActorCreate, ActorPatch, ActorRead, ActorStatus
from services.directory.rules import ImportOutcome

ACTOR_ID = str(uuid.uuid4())
ADMIN = Principal(subject="admin", role=Role.ADMIN)
WRITING_PARTNER = Principal(subject="p", role=Role.PARTNER, scopes=frozenset({rules.WRITE_SCOPE}))
READING_PARTNER = Principal(subject="p", role=Role.PARTNER)
ITSELF = Principal(subject="a", role=Role.ACTOR, actor_id=ACTOR_ID)
ANOTHER_ACTOR = Principal(subject="b", role=Role.ACTOR, actor_id=str(uuid.uuid4()))
COLLECTIVITY = Principal(subject="c", role=Role.COLLECTIVITY, actor_id=str(uuid.uuid4()))


def fields(**overrides: object) -> ActorCreate:
    values: dict[str, object] = {
        "name": "Ressourcerie de Planoise",
        "kind": "association",
        "commune_code": "25056",
        "themes": ["reemploi"],
        "siret": None,
        "source_id": "src-1",
        "contact": {"name": "Camille Martin", "email": "camille@example.org"},
        **overrides,
    }
    return ActorCreate.model_validate(values)


def stored(status: ActorStatus = ActorStatus.active, version: int = 3, **overrides: object) -> ActorRead:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    actor = store.read_from_values(uuid.UUID(ACTOR_ID), version, store.row_values(fields(**overrides)), now, now)
    return actor.model_copy(update={"status": status})


class TestWhoMay:
    @pytest.mark.parametrize(
        ("principal", "allowed"),
        [(ADMIN, True), (WRITING_PARTNER, True), (READING_PARTNER, False), (ITSELF, False), (COLLECTIVITY, False)],
    )
    def test_register(self, principal: Principal, allowed: bool) -> None:
        if allowed:
            rules.require_creator(principal)
        else:
            with pytest.raises(Forbidden, match="registering actors"):
                rules.require_creator(principal)

    @pytest.mark.parametrize(
        ("principal", "allowed"),
        [
            (ADMIN, True),
            (WRITING_PARTNER, True),
            (ITSELF, True),
            (READING_PARTNER, False),
            (ANOTHER_ACTOR, False),
            (COLLECTIVITY, False),
        ],
    )
    def test_edit(self, principal: Principal, allowed: bool) -> None:
        if allowed:
            rules.require_editor(principal, ACTOR_ID)
        else:
            with pytest.raises(Forbidden, match="edits an actor"):
                rules.require_editor(principal, ACTOR_ID)

    def test_an_actor_keeps_its_own_kind_and_others_may_change_it(self) -> None:
        rules.require_kind_kept(ITSELF, "association", "association")
        with pytest.raises(Forbidden, match="its own kind"):
            rules.require_kind_kept(ITSELF, "association", "cooperative")
        rules.require_kind_kept(ADMIN, "association", "cooperative")
        rules.require_kind_kept(WRITING_PARTNER, "association", "cooperative")

    @pytest.mark.parametrize(
        ("caller", "sees"),
        [
            (None, False),
            (ServiceIdentity("matching"), True),
            (ADMIN, True),
            (READING_PARTNER, True),
            (ITSELF, True),
            (ANOTHER_ACTOR, False),
            (COLLECTIVITY, False),
        ],
    )
    def test_contact_visibility(self, caller: Principal | ServiceIdentity | None, sees: bool) -> None:
        assert rules.can_see_contact(caller, ACTOR_ID) is sees

    def test_the_snapshot_is_for_services_admins_and_partners(self) -> None:
        for caller in (ServiceIdentity("events"), ADMIN, READING_PARTNER):
            rules.require_snapshot_reader(caller)
        with pytest.raises(Unauthenticated):
            rules.require_snapshot_reader(None)
        with pytest.raises(Forbidden):
            rules.require_snapshot_reader(ITSELF)


class TestStateRules:
    def test_a_stale_version_is_a_conflict_naming_the_current_one(self) -> None:
        rules.check_version(ACTOR_ID, 3, 3)
        rules.check_version(ACTOR_ID, None, 3)  # the caller did not say which version it edited
        with pytest.raises(Conflict) as caught:
            rules.check_version(ACTOR_ID, 2, 3)
        assert caught.value.extra == {"rule": "stale", "current_version": 3}
        assert caught.value.field == "If-Match"

    def test_archiving_an_archived_actor_is_not_needed(self) -> None:
        assert rules.needs_archiving(stored(ActorStatus.active))
        assert not rules.needs_archiving(stored(ActorStatus.archived))

    def test_identifier_conflicts_name_the_field_and_the_holder(self) -> None:
        taken = rules.identifier_taken("siret", "73282932000074", "some-id")
        assert (taken.field, taken.extra) == ("siret", {"rule": "unique", "existing_actor_id": "some-id"})
        raced = rules.identifier_raced("actors_rna_key")
        assert (raced.field, raced.extra["rule"]) == ("rna", "unique")


class TestPatched:
    def test_only_the_fields_given_change(self) -> None:
        current = stored()
        result = rules.patched(current, ActorPatch.model_validate({"description": "Nouveau", "qpv_code": None}))
        assert result.description == "Nouveau" and result.qpv_code is None
        assert result.name == current.name and result.kind == current.kind and result.source_id == "src-1"
        assert result.contact is not None and result.contact.email == "camille@example.org"

    def test_a_null_removes_an_optional_value_the_description_and_lists_becoming_empty(self) -> None:
        current = stored(website="https://ressourcerie.example.org/", qpv_code="QN02501M", networks=["cress"])
        patch = ActorPatch.model_validate(
            {"description": None, "themes": None, "networks": None, "website": None, "qpv_code": None}
        )
        result = rules.patched(current, patch)
        assert (result.description, result.themes, result.networks) == ("", [], [])
        assert (result.website, result.qpv_code) == (None, None)
        assert result.name == current.name and result.contact == current.contact

    @pytest.mark.parametrize("field", ["name", "kind", "commune_code"])
    def test_a_null_on_a_required_field_is_refused(self, field: str) -> None:
        with pytest.raises(ValueError, match="changed, not removed"):
            ActorPatch.model_validate({field: None})

    def test_a_nested_value_is_replaced_whole(self) -> None:
        result = rules.patched(stored(), ActorPatch.model_validate({"contact": {"phone": "03 81 00 00 00"}}))
        assert result.contact is not None
        assert (result.contact.name, result.contact.email, result.contact.phone) == (None, None, "03 81 00 00 00")

    def test_an_empty_patch_is_refused(self) -> None:
        with pytest.raises(ValidationFailed) as caught:
            rules.patched(stored(), ActorPatch.model_validate({}))
        assert (caught.value.field, caught.value.extra["rule"]) == ("body", "not_empty")

    def test_a_rule_across_fields_is_checked_on_the_patched_actor(self) -> None:
        strasbourg = stored(commune_code="67482", local_register="TJ Strasbourg VOL 85 n°12")
        assert rules.patched(strasbourg, ActorPatch.model_validate({"name": "Autre nom"})).local_register
        with pytest.raises(ValidationFailed) as caught:
            rules.patched(strasbourg, ActorPatch.model_validate({"commune_code": "25056"}))
        assert (caught.value.field, caught.value.extra["rule"]) == ("local_register", "alsace_moselle")
        assert "Alsace-Moselle" in caught.value.detail


class TestImportOutcome:
    def test_the_same_fields_change_nothing(self) -> None:
        assert rules.import_outcome(stored(), stored(version=9)) is ImportOutcome.unchanged

    def test_new_fields_update(self) -> None:
        assert rules.import_outcome(stored(), stored(description="Autre texte")) is ImportOutcome.updated

    def test_an_archived_actor_seen_again_is_reactivated(self) -> None:
        assert rules.import_outcome(stored(ActorStatus.archived), stored()) is ImportOutcome.reactivated

    def test_identity_is_the_identifiers_given_in_trust_order(self) -> None:
        actor = fields(rna="W251234567", source_id="src-9")
        assert rules.identity(actor) == [("source_id", "src-9"), ("rna", "W251234567")]
