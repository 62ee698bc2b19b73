"""Update inputs as the services' PATCH bodies: an explicit null removes a value, a field not given is left out."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.types.actors import ContactInput, RegisterActorInput, UpdateActorInput
from gateway.types.common import body_of, patch_of
from gateway.types.matching import NeedKind, PerimeterInput, UpdateNeedInput


def test_a_field_not_given_is_left_out_and_a_null_is_kept() -> None:
    assert patch_of(UpdateNeedInput(title="Un atelier vélo", budget_max=None)) == {
        "title": "Un atelier vélo",
        "budget_max": None,
        "version": None,  # a null version and none given are the same: no check (the resolver takes it out)
    }


def test_values_are_the_services_json_and_a_nested_input_is_sent_whole_without_its_nulls() -> None:
    deadline = datetime(2027, 3, 1, 18, tzinfo=UTC)
    patch = patch_of(
        UpdateNeedInput(
            kind=NeedKind.QUOTE, perimeter=PerimeterInput(territories=["DEP-29"], radius_km=None), deadline=deadline
        )
    )
    assert patch == {"kind": "quote", "perimeter": {"territories": ["DEP-29"]}, "deadline": deadline, "version": None}


def test_a_null_on_a_required_field_reaches_the_service_which_refuses_it() -> None:
    assert patch_of(UpdateNeedInput(title=None, deadline=None))["title"] is None
    assert patch_of(UpdateActorInput(name=None, website=None, contact=ContactInput(email="a@example.org"))) == {
        "name": None,
        "website": None,
        "contact": {"email": "a@example.org"},
        "version": None,
    }


def test_registering_leaves_out_both_nulls_and_fields_not_given() -> None:
    given = RegisterActorInput(name="Ressourcerie", kind="association", commune_code="29232", website=None)
    assert body_of(given) == {"name": "Ressourcerie", "kind": "association", "commune_code": "29232"}
