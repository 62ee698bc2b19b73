"""Property tests against the real stack: generated token headers, JSON shapes and text full of line separators
and control characters never get a 5xx, a broken feed, a formula in the CSV export or an e-mail with a header of
its own (issue 19). Each runs a bounded, fixed set of examples so that it stays a few seconds of `make test`."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import icalendar
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from services.common.auth import Role
from services.common.encoding import FORMULA_STARTS, one_line
from services.contracts.errors import ErrorCode
from tests.integration.directory_fixtures import Directory
from tests.integration.events_fixtures import Events
from tests.integration.gateway_fixtures import Gateway
from tests.integration.matching_fixtures import Matching
from tests.integration.test_directory_api import create
from tests.integration.test_events import in_replica
from tests.integration.test_matching import eventually
from tests.integration.test_matching import in_replica as in_matching_replica
from tests.unit.test_text_encoding import BREAKS, CONTROLS, INJECTIONS
from tests.unit.test_token_shapes import json_values, tokens

pytestmark = pytest.mark.asyncio

# A fixed set of examples (the same on every run), no example database, no deadline: the stack answers in its time.
AGAINST_THE_STACK = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
awkward_text = st.lists(  # no NUL: PostgreSQL refuses it, and tests/integration/test_bad_input.py sees to that
    st.sampled_from(BREAKS)
    | st.sampled_from([c for c in CONTROLS if c != "\x00"])
    | st.sampled_from(INJECTIONS)
    | st.text(st.characters(exclude_characters="\x00"), max_size=4),
    min_size=1,
    max_size=6,
).map(lambda parts: "Texte " + "".join(parts))  # long enough for every minimum length
EMAIL_HEADERS = {"From", "To", "Subject", "Message-ID", "Content-Type", "Content-Transfer-Encoding", "MIME-Version"}
ELSEWHERE = {  # Strasbourg, a theme of its own: no other test's matches or searches see these actors
    "commune_code": "67482",
    "location": {"lat": 48.5734, "lon": 7.7521},
    "themes": ["culture"],
    "service_types": ["prestation_service"],
    "activities": [],
    "qpv_code": None,
}


def unbroken_calendar(body: bytes) -> icalendar.Calendar:
    assert all(b"\r" not in line and b"\n" not in line for line in body.split(b"\r\n")), "no bare CR or LF"
    return icalendar.Calendar.from_ical(body)


@settings(AGAINST_THE_STACK, max_examples=8)  # each example registers an actor and waits for it in the events replica
@given(name=awkward_text, title=awkward_text, description=awkward_text, address=awkward_text, person=awkward_text)
@example(
    name="Asso\r\nBcc: pirate@example.org",
    title="Forum\r\nX-Injected: oui\u2028\x85",
    description="a\rb\nc\r\nd\u2028e\u2029f\x85g\x0bh\x0ci\x1cj",
    address="12 rue\nEND:VEVENT",
    person='=HYPERLINK("https://pirate.example")',
)
async def test_no_text_breaks_a_feed_an_export_or_an_email(
    directory: Directory, events: Events, name: str, title: str, description: str, address: str, person: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with directory.client() as http:
        registered = await http.post(
            "/v1/actors", json={**ELSEWHERE, "kind": "association", "name": name}, headers=directory.admin
        )
    assert registered.status_code < 500, registered.text
    if registered.status_code != 201:  # a name the directory refuses (NUL, too long once stripped)
        organizer = await create(directory, **ELSEWHERE, name=f"Organisateur {tag}")
    else:
        organizer = registered.json()
    await in_replica(events, organizer["id"])
    starts = datetime.now(UTC) + timedelta(days=10)
    body = {
        "title": title,
        "description": description,
        "kind": "forum",
        "themes": ["culture"],
        "organizer_ids": [organizer["id"]],
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=2)).isoformat(),
        "place": {"address": address, "commune_code": "67482"},
        "publish": True,
    }
    email = f"personne-{tag}@example.org"
    async with events.client() as http:
        created = await http.post("/v1/events", json=body, headers=events.admin)
        assert created.status_code < 500, created.text
        event(f"event {created.status_code}")
        if created.status_code != 201:
            return  # refused input (a blank title): nothing reaches a feed
        event_id = created.json()["id"]
        taken = await http.post(
            f"/v1/events/{event_id}/registrations",
            json={"person": {"name": person, "email": email}},
            headers=events.token(Role.PARTNER, subject=f"partner:{tag}"),
        )
        assert taken.status_code < 500, taken.text
        ics = await http.get(f"/v1/events/{event_id}.ics")
        feed = await http.get(f"/v1/feeds/organizers/{organizer['id']}.ics")
        export = await http.get(f"/v1/events/{event_id}/registrations.csv", headers=events.admin)
    assert ics.status_code == feed.status_code == export.status_code == 200, (ics.text, feed.text, export.text)
    (vevent,) = unbroken_calendar(ics.content).walk("VEVENT")
    assert str(vevent["SUMMARY"]) == one_line(created.json()["title"])
    assert vevent["ORGANIZER"].params["CN"] == one_line(organizer["name"])
    assert event_id in {str(v["UID"]).split("@")[0] for v in unbroken_calendar(feed.content).walk("VEVENT")}
    rows = list(csv.reader(io.StringIO(export.text.removeprefix("\ufeff"), newline=""), delimiter=";"))
    for cell in (cell for row in rows[1:] for cell in row):
        assert not cell.startswith(FORMULA_STARTS) and not (cell and cell[0].isspace()), rows
    if taken.status_code == 201:

        async def told() -> list[Any]:
            return [m for m in events.smtp.messages if m["To"] == email]

        (mail,) = await eventually(told)
        assert set(mail.keys()) == EMAIL_HEADERS and len(mail["To"].addresses) == 1
        assert one_line(created.json()["title"]) in " ".join(str(mail["Subject"]).split()), mail["Subject"]


@settings(AGAINST_THE_STACK, max_examples=40)
@given(data=st.data())
async def test_no_token_shape_gets_a_server_error(gateway: Gateway, directory: Directory, data: st.DataObject) -> None:
    stack = gateway.settings
    token = data.draw(tokens(stack.jwt_active_kid, stack.signing_keys()[stack.jwt_active_kid], stack.internal_key))
    # What an HTTP header can carry: no blank nor control character (the HTTP parser refuses them before the app).
    raw = "".join(c for c in token if ord(c) > 0x20 and c != "\x7f").encode("utf-8", "surrogatepass") or b"x"
    async with httpx.AsyncClient(timeout=10) as http:
        asked = await http.post(
            gateway.url + "/graphql", json={"query": "{ me { role } }"}, headers={b"Authorization": b"Bearer " + raw}
        )
        forwarded = await http.get(directory.url + "/v1/actors", headers={b"X-Maillage-Principal": raw})
    assert asked.status_code in (200, 401), asked.text
    assert forwarded.status_code in (200, 401), forwarded.text
    if asked.status_code == 401:
        assert asked.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    if forwarded.status_code == 401:
        assert forwarded.json()["code"] == "UNAUTHENTICATED"


@pytest.fixture(scope="session")
async def mayotte(directory: Directory, matching: Matching, events: Events) -> dict[str, str]:
    """A local authority and an association in Mamoudzou, where no other test places actors or needs."""
    place: dict[str, Any] = {
        "commune_code": "97611",
        "location": {"lat": -12.78, "lon": 45.23},
        "activities": [],
        "qpv_code": None,
    }
    authority = await create(
        directory, **place, name="Commune de Mamoudzou", kind="local_authority", themes=[], service_types=[]
    )
    association = await create(directory, **place, name="Association de Kawéni", themes=["culture"])
    await in_matching_replica(matching, authority["id"])
    await in_replica(events, association["id"])
    return {"authority": authority["id"], "association": association["id"]}


MUTATIONS: dict[str, tuple[str, Callable[[dict[str, str]], dict[str, Any]]]] = {
    "issueCredential": (
        "mutation($input: IssueCredentialInput!) { issueCredential(input: $input) { token } }",
        lambda ids: {"name": "Carte", "role": "PARTNER", "scopes": ["lecture"], "ttlDays": 30},
    ),
    "publishNeed": (
        "mutation($input: PublishNeedInput!) { publishNeed(input: $input) { id title } }",
        lambda ids: {
            "title": "Un lieu de réemploi",
            "kind": "PARTNERSHIP",
            "themes": ["reemploi"],
            "communeCode": "97611",
            "location": {"lat": -12.78, "lon": 45.23},
            "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            "ownerId": ids["authority"],
            "perimeter": {"radiusKm": 5},
            "budgetMin": 100,
            "budgetMax": 1000,
        },
    ),
    "publishEvent": (
        "mutation($input: PublishEventInput!) { publishEvent(input: $input) { id title } }",
        lambda ids: {
            "title": "Forum de Kawéni",
            "kind": "FORUM",
            "organizerIds": [ids["association"]],
            "startsAt": (datetime.now(UTC) + timedelta(days=5)).isoformat(),
            "endsAt": (datetime.now(UTC) + timedelta(days=5, hours=2)).isoformat(),
            "place": {"address": "Kawéni", "communeCode": "97611"},
            "capacity": 10,
            "draft": True,  # never in a search or a feed another test reads
        },
    ),
}
REFUSALS = set(ErrorCode) - {ErrorCode.INTERNAL_SERVER_ERROR}  # a refusal, never an unexpected error
EXTREMES = [2_000_000_000, 2**31 - 1, -1, 0, 1e308, -1e308, 5e-324, [], {}, None]
INSTANTS = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2031-02-30T00:00:00Z", "2031-01-01T00:00:00"]


def like(valid: Any) -> st.SearchStrategy[Any]:
    """Values of the valid one's JSON type (so that they reach the services), extremes, and any JSON at all."""
    same: st.SearchStrategy[Any]
    if isinstance(valid, bool) or valid is None:
        same = st.booleans()
    elif isinstance(valid, int):
        same = st.integers(min_value=-(2**31), max_value=2**31 - 1)
    elif isinstance(valid, float):
        same = st.floats(allow_nan=False, allow_infinity=False)
    elif isinstance(valid, str):
        same = awkward_text | st.sampled_from(INSTANTS)
    elif isinstance(valid, list):
        same = st.lists(awkward_text | st.sampled_from(valid), max_size=4)
    else:
        same = st.fixed_dictionaries({key: like(value) for key, value in valid.items()})
    return same | same | st.sampled_from(EXTREMES) | json_values


@settings(AGAINST_THE_STACK, max_examples=60)
@given(data=st.data())
async def test_no_json_shape_gets_a_server_error(
    gateway: Gateway, mayotte: dict[str, str], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(MUTATIONS)))
    mutation, valid = MUTATIONS[name]
    value = valid(mayotte)
    for field in data.draw(st.lists(st.sampled_from(sorted(value)), min_size=1, max_size=3, unique=True)):
        value[field] = data.draw(like(value[field]))
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            gateway.url + "/graphql",
            # As a forger's encoder may: lone surrogates escaped (\ud800), NaN and Infinity written out.
            content=json.dumps({"query": mutation, "variables": {"input": value}}).encode(),
            headers={"Authorization": gateway.admin, "Content-Type": "application/json"},
        )
    assert response.status_code < 500, response.text
    errors = response.json().get("errors") or [] if response.status_code == 200 else []
    event(f"{name}: {response.status_code} {errors[0]['extensions'].get('field', 'variables') if errors else 'done'}")
    if response.status_code == 200:
        for error in errors:
            assert error["extensions"]["code"] in REFUSALS, (name, value, error)
            if error["extensions"]["code"] == "BAD_USER_INPUT" and "field" in error["extensions"]:
                assert error["extensions"]["field"].startswith("input"), (name, value, error)
