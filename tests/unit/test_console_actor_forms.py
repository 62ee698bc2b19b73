"""The actor's console forms without a server: a profile edit sends only what changed, errors land on the form's own
rows, a decline's comment is the reason picked and the text written, dates read as in France."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData, UploadFile

from gateway.console.inbox import _comment, french_date, place_of
from gateway.console.profile import ProfileForm, errors_on_rows
from gateway.console.web import FormErrors

ACTOR: dict[str, Any] = {
    "id": "a1",
    "version": 3,
    "name": "Ressourcerie du Blosne",
    "description": "Collecte et revente.",
    "website": None,
    "contact": {"name": None, "email": "contact@example.org", "phone": None},
    "themes": ["reemploi"],
    "serviceTypes": ["fourniture_biens"],
    "activities": [
        {
            "theme": "reemploi",
            "serviceType": "fourniture_biens",
            "area": {"kind": "RADIUS", "territories": [], "radiusKm": 30.0},
        },
        {
            "theme": "reparation",
            "serviceType": "prestation_service",
            "area": {"kind": "TERRITORIES", "territories": ["EPCI-243500139"], "radiusKm": None},
        },
    ],
}


def posted(**changes: str | list[str]) -> FormData:
    """The form as a browser posts it for ACTOR, with `changes` (names with dots given as __)."""
    fields: dict[str, str | list[str]] = {
        "version": "3",
        "name": "Ressourcerie du Blosne",
        "description": "Collecte et revente.",
        "website": "",
        "contact.name": "",
        "contact.email": "contact@example.org",
        "contact.phone": "",
        "themes": ["reemploi"],
        "serviceTypes": ["fourniture_biens"],
        "activities.0.theme": "reemploi",
        "activities.0.serviceType": "fourniture_biens",
        "activities.0.area.kind": "radius",
        "activities.0.area.radiusKm": "30",
        "activities.1.theme": "reparation",
        "activities.1.serviceType": "prestation_service",
        "activities.1.area.kind": "territories",
        "activities.1.area.territories": ["EPCI-243500139"],
        "activities.2.theme": "",
        "activities.2.serviceType": "",
        "activities.2.area.kind": "territories",
    }
    fields.update({name.replace("__", "."): value for name, value in changes.items()})
    items: list[tuple[str, str | UploadFile]] = [
        (name, item) for name, value in fields.items() for item in ([value] if isinstance(value, str) else value)
    ]
    return FormData(items)


def changes_of(form: FormData) -> dict[str, Any]:
    changes, _, errors = ProfileForm.of_form(form).changes(ProfileForm.of_actor(ACTOR))
    assert errors.fields == {}
    return changes


def test_the_form_as_shown_changes_nothing() -> None:
    assert changes_of(posted()) == {}


def test_only_the_fields_that_differ_are_sent_with_the_version_edited() -> None:
    assert changes_of(posted(description="Réparation de vélos.")) == {
        "description": "Réparation de vélos.",
        "version": 3,
    }
    assert changes_of(posted(themes=["reemploi", "reparation"])) == {"themes": ["reemploi", "reparation"], "version": 3}


def test_an_emptied_website_is_removed_with_a_null() -> None:
    with_site = {**ACTOR, "website": "https://ressourcerie.example.org/"}
    changes, _, _ = ProfileForm.of_form(posted(website="")).changes(ProfileForm.of_actor(with_site))
    assert changes == {"website": None, "version": 3}
    assert changes_of(posted(website="https://blosne.example.org/")) == {
        "website": "https://blosne.example.org/",
        "version": 3,
    }


def test_the_contact_is_sent_whole_and_an_emptied_part_is_removed() -> None:
    assert changes_of(posted(contact__email="", contact__phone="02 99 00 00 00")) == {
        "contact": {"name": None, "email": None, "phone": "02 99 00 00 00"},
        "version": 3,
    }


def test_activities_are_sent_whole_when_one_changes_and_a_removed_or_blank_row_is_left_out() -> None:
    changes = changes_of(
        posted(activities__0__remove="1", activities__1__area__territories=["EPCI-243500139", "DEP-35"])
    )
    assert changes == {
        "activities": [
            {
                "theme": "reparation",
                "serviceType": "prestation_service",
                "area": {"kind": "TERRITORIES", "territories": ["EPCI-243500139", "DEP-35"]},
            }
        ],
        "version": 3,
    }


def test_a_radius_that_is_not_a_number_is_refused_beside_it_and_a_decimal_comma_is_one() -> None:
    _, _, errors = ProfileForm.of_form(posted(activities__0__area__radiusKm="trente")).changes(
        ProfileForm.of_actor(ACTOR)
    )
    assert list(errors.fields) == ["activities.0.area.radiusKm"]
    changes = changes_of(posted(activities__0__area__radiusKm="12,5"))
    assert changes["activities"][0]["area"] == {"kind": "RADIUS", "radiusKm": 12.5}


def test_the_apis_errors_name_the_forms_own_rows_in_french() -> None:
    # The first row removed: the API's activity 0 is the form's row 1.
    form = ProfileForm.of_form(posted(activities__0__remove="1", activities__1__area__territories=[]))
    _, rows, _ = form.changes(ProfileForm.of_actor(ACTOR))
    api = FormErrors(fields={"activities.0.area.territories": "an area of kind 'territories' lists at least one"})
    assert rows == [0]  # rows of the form as parsed (the removed one is gone from it)
    shown = errors_on_rows(api, rows)
    assert list(shown.fields) == ["activities.0.area.territories"]
    assert "territoire" in shown.fields["activities.0.area.territories"]
    assert errors_on_rows(FormErrors(fields={"contact.email": "pattern"}), []).fields == {
        "contact.email": "Une adresse e-mail de la forme nom@exemple.fr."
    }


def test_a_decline_says_the_reason_picked_and_what_was_written() -> None:
    assert _comment("declined", {"commentaire": "", "raison": "delais", "precision": ""}) == (
        "Les délais sont trop courts pour nous"
    )
    assert _comment("declined", {"commentaire": "", "raison": "delais", "precision": " Pas avant mai "}) == (
        "Les délais sont trop courts pour nous — Pas avant mai"
    )
    assert _comment("declined", {"commentaire": "", "raison": "inventee", "precision": "  "}) is None
    assert _comment("interested", {"commentaire": "  ", "raison": "delais", "precision": "x"}) is None


def test_dates_and_places_read_as_in_france() -> None:
    assert french_date("2027-03-01T18:00:00+01:00") == "1 mars 2027"
    assert french_date(None) == ""
    assert place_of({"communeCode": "35238", "communeName": "Rennes"}) == "Rennes"
    assert place_of({"communeCode": "35999", "communeName": None}) == "Commune INSEE 35999"  # unknown to the API


def test_numbers_on_pages_are_written_the_french_way() -> None:
    from gateway.console.web import french_number

    assert [french_number(v) for v in (48.1113, -1.68, 30.0, 2.5, 15, None)] == [
        "48,1113",
        "-1,68",
        "30",
        "2,5",
        "15",
        "",
    ]


def test_a_perimeter_reads_as_the_names_of_its_territories() -> None:
    from gateway.console.needs import territory_choices
    from gateway.console.web import territory_labels

    perimeter = {
        "territories": ["EPCI-243500139", "COM-99999"],
        "places": [{"code": "EPCI-243500139", "kind": "EPCI", "name": "Rennes Métropole"}],
    }
    assert territory_labels(perimeter) == ["Rennes Métropole (intercommunalité)", "COM-99999"]
    assert territory_choices(perimeter) == [
        ("EPCI-243500139", "Rennes Métropole (intercommunalité)"),
        ("COM-99999", "COM-99999"),  # a code the API does not name stays checked, as a code
    ]
    assert territory_labels({"territories": [], "places": []}) == []
