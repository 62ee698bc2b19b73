"""The console's need form without a server: an edit sends only what changed, and an emptied optional field as a
null that removes its value."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from gateway.console.needs import NeedForm

NEED: dict[str, Any] = {
    "title": "Une ressourcerie à Kerfeunteun",
    "description": "Collecte et revente d'objets.",
    "kind": "partnership",
    "themes": ["reemploi"],
    "serviceTypes": [],
    "eligibleKinds": [],
    "communeCode": "29232",
    "communeName": "Quimper",
    "location": {"lat": 47.996, "lon": -4.102},
    "perimeter": {"territories": ["EPCI-200068120"], "radiusKm": 15.0, "places": []},
    "budgetMin": 1000.0,
    "budgetMax": 5000.0,
    "deadline": "2027-03-01T22:59:59+00:00",
    "qpvPriority": False,
}


def posted(**changes: str | list[str]) -> FormData:
    """The edit form as a browser posts it for NEED, with `changes` (names with dots given as __)."""
    fields: dict[str, str | list[str]] = {
        "title": NEED["title"],
        "description": NEED["description"],
        "kind": "PARTNERSHIP",
        "themes": ["reemploi"],
        "communeCode": "29232|Quimper",
        "location.lat": "47.996",
        "location.lon": "-4.102",
        "perimeter.territories": ["EPCI-200068120|CA Quimper Bretagne Occidentale"],
        "perimeter.radiusKm": "15",
        "budgetMin": "1000",
        "budgetMax": "5000",
        "deadline": "2027-03-01",
    }
    fields.update({name.replace("__", "."): value for name, value in changes.items()})
    return FormData(
        [(name, item) for name, value in fields.items() for item in ([value] if isinstance(value, str) else value)]
    )


def changes_of(form: FormData) -> dict[str, Any]:
    return NeedForm.of_form(form).changes(NeedForm.of_need(NEED))


def test_the_form_as_shown_changes_nothing() -> None:
    assert changes_of(posted()) == {}


def test_an_emptied_budget_is_sent_as_null_and_the_other_one_is_not_sent() -> None:
    assert changes_of(posted(budgetMax="")) == {"budgetMax": None}
    assert changes_of(posted(budgetMin="", budgetMax="")) == {"budgetMin": None, "budgetMax": None}
    assert changes_of(posted(budgetMax="6 000")) == {"budgetMax": 6000}


def test_an_emptied_radius_sends_the_perimeter_whole_without_it() -> None:
    assert changes_of(posted(perimeter__radiusKm="")) == {"perimeter": {"territories": ["EPCI-200068120"]}}
    emptied = changes_of(posted(perimeter__radiusKm="", perimeter__territories=[]))
    assert emptied == {"perimeter": {"territories": [], "radiusKm": None}}  # the perimeter itself takes no null


def test_an_emptied_description_is_sent_as_null() -> None:
    assert changes_of(posted(description="  ")) == {"description": None}


def test_the_edit_form_shows_the_need_as_french_readers_write_it() -> None:
    shown = NeedForm.of_need(NEED).values
    assert (shown["location.lat"], shown["location.lon"]) == ("47,996", "-4,102")  # a decimal comma, as the help says
    assert shown["commune"][0] == "29232"
