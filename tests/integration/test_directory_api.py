"""The directory over real HTTP, PostgreSQL and broker: register, validate, edit, archive, search, snapshot, import."""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from typing import Any

import pytest
from stdnum import luhn

from services.common.auth import Role
from services.contracts import territories
from services.contracts.topics import ACTOR
from services.directory.imports import BATCH_SIZE
from tests.integration.directory_fixtures import Directory
from tests.integration.kafka_tools import header, read_topic

pytestmark = pytest.mark.asyncio

BESANCON = (47.2378, 6.0241)
STRASBOURG = (48.5734, 7.7521)


def actor(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Ressourcerie de Planoise",
        "kind": "association",
        "commune_code": "25056",
        "themes": ["reemploi"],
        "service_types": ["fourniture_biens"],
        "activities": [
            {"theme": "reparation", "service_type": "prestation_service", "area": {"kind": "radius", "radius_km": 20}}
        ],
        "location": {"lat": 47.2230, "lon": 5.9650},
        "qpv_code": "QN02501M",
        "description": "Collecte, tri et revente d'objets de seconde main dans le quartier.",
        "contact": {"name": "Camille Martin", "email": "camille@example.org", "phone": "03 81 00 00 00"},
    }
    body.update(overrides)
    return body


def unique_siret() -> str:
    """A valid SIRET: a Luhn-valid SIREN, then an establishment number making all 14 digits Luhn-valid."""
    body = f"{uuid.uuid4().int % 10**8:08d}"
    siren = body + luhn.calc_check_digit(body)
    nic = f"{uuid.uuid4().int % 10**4:04d}"
    return siren + nic + luhn.calc_check_digit(siren + nic)


async def create(directory: Directory, **overrides: Any) -> dict[str, Any]:
    async with directory.client() as http:
        response = await http.post("/v1/actors", json=actor(**overrides), headers=directory.admin)
    assert response.status_code == 201, response.text
    return dict(response.json())


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


class TestRegister:
    async def test_an_admin_registers_an_actor_with_derived_geography(self, directory: Directory) -> None:
        created = await create(directory, siret=unique_siret())
        assert created["version"] == 1
        assert created["departement"] == "25" and created["region"] == "27"
        assert created["epci"] and f"EPCI-{created['epci']}" in created["territories"]
        assert set(created["themes"]) == {"reemploi", "reparation"}, "activity themes count as themes"
        assert created["status"] == "active"

    async def test_the_event_carries_the_actor_but_no_personal_contact(self, directory: Directory) -> None:
        created = await create(directory)
        records = await read_topic(directory.settings, ACTOR, expect=1, timeout_s=15, idle_s=0.5)
        mine = [r for r in records if r.key == created["id"].encode()]
        assert len(mine) == 1
        assert header(mine[0], "ce_type") == "org.maillage.directory.actor.registered"
        data = json.loads(mine[0].value)
        assert data["actor"]["id"] == created["id"] and data["actor"]["version"] == 1
        raw = mine[0].value.decode()
        assert "camille" not in raw.lower() and "03 81" not in raw

    @pytest.mark.parametrize(
        ("who", "status"),
        [
            (None, 401),
            ((Role.PARTNER, None, ()), 403),
            ((Role.ACTOR, "a1", ()), 403),
            ((Role.COLLECTIVITY, "c1", ()), 403),
            ((Role.PARTNER, None, ("directory:write",)), 201),
        ],
    )
    async def test_only_admins_and_writing_partners_register(self, directory: Directory, who: Any, status: int) -> None:
        headers = directory.token(*who) if who else {}
        async with directory.client() as http:
            response = await http.post("/v1/actors", json=actor(), headers=headers)
        assert response.status_code == status, response.text

    @pytest.mark.parametrize(
        ("overrides", "field", "fragment"),
        [
            ({"siret": "73282932000075"}, "siret", "SIRET"),
            ({"rna": "W12345"}, "rna", "W followed by 9 digits"),
            ({"themes": ["astrologie"]}, "themes", "unknown theme"),
            ({"kind": "multinational"}, "kind", "unknown actor kind"),
            ({"commune_code": "99999"}, "commune_code", "99999"),
            (
                {
                    "activities": [
                        {
                            "theme": "reemploi",
                            "service_type": "formation",
                            "area": {"kind": "radius", "radius_km": 5000},
                        }
                    ]
                },
                "activities.0.area.radius_km",
                "500",
            ),
            (
                {
                    "activities": [
                        {
                            "theme": "reemploi",
                            "service_type": "formation",
                            "area": {"kind": "territories", "territories": ["DEP-999"]},
                        }
                    ]
                },
                "activities.0.area",
                "DEP-999",
            ),
            ({"local_register": "TJ Besançon 12"}, "", "Alsace-Moselle"),
            ({"location": {"lat": 123, "lon": 6}}, "location", "lat"),
            ({"contact": {"email": "not-an-email"}}, "contact.email", "pattern"),
            ({"name": ""}, "name", "at least 2"),
        ],
    )
    async def test_bad_input_gets_422_naming_the_field_and_rule(
        self, directory: Directory, overrides: dict[str, Any], field: str, fragment: str
    ) -> None:
        async with directory.client() as http:
            response = await http.post("/v1/actors", json=actor(**overrides), headers=directory.admin)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "BAD_USER_INPUT"
        assert problem["errors"][0]["field"].startswith(field)
        assert fragment.lower() in json.dumps(problem).lower()

    async def test_a_duplicate_identifier_gets_409_naming_the_holder(self, directory: Directory) -> None:
        siret = unique_siret()
        first = await create(directory, siret=siret)
        async with directory.client() as http:
            response = await http.post("/v1/actors", json=actor(siret=siret, name="Autre"), headers=directory.admin)
        assert response.status_code == 409
        assert response.json()["existing_actor_id"] == first["id"]

    async def test_alsace_moselle_associations_use_the_tribunal_register(self, directory: Directory) -> None:
        created = await create(
            directory,
            commune_code="67482",
            location={"lat": 48.58, "lon": 7.75},
            local_register=f"TJ Strasbourg VOL {uuid.uuid4().hex[:6]}",
            qpv_code=None,
        )
        assert created["departement"] == "67"


class TestReadEditArchive:
    async def test_contact_is_shown_to_admins_and_hidden_from_the_public(self, directory: Directory) -> None:
        created = await create(directory)
        async with directory.client() as http:
            public = (await http.get(f"/v1/actors/{created['id']}")).json()
            admin = (await http.get(f"/v1/actors/{created['id']}", headers=directory.admin)).json()
            unknown = await http.get(f"/v1/actors/{uuid.uuid4()}")
        assert public["contact"] is None
        assert admin["contact"]["email"] == "camille@example.org"
        assert unknown.status_code == 404

    async def test_optimistic_concurrency(self, directory: Directory) -> None:
        created = await create(directory)
        url = f"/v1/actors/{created['id']}"
        body = actor(name="Ressourcerie de Planoise (nouveau nom)")
        async with directory.client() as http:
            missing = await http.put(url, json=body, headers=directory.admin)
            ok = await http.put(url, json=body, headers={**directory.admin, "If-Match": '"1"'})
            stale = await http.put(url, json=body, headers={**directory.admin, "If-Match": '"1"'})
        assert missing.status_code == 428
        assert ok.status_code == 200 and ok.json()["version"] == 2 and ok.headers["ETag"] == '"2"'
        assert stale.status_code == 409 and stale.json()["current_version"] == 2

    async def test_an_actor_edits_itself_and_nobody_else(self, directory: Directory) -> None:
        mine = await create(directory)
        other = await create(directory)
        me = directory.token(Role.ACTOR, mine["id"])
        async with directory.client() as http:
            own = await http.put(
                f"/v1/actors/{mine['id']}", json=actor(description="Nouveau texte"), headers={**me, "If-Match": '"1"'}
            )
            theirs = await http.put(f"/v1/actors/{other['id']}", json=actor(), headers={**me, "If-Match": '"1"'})
        assert own.status_code == 200
        assert theirs.status_code == 403

    async def test_archive_keeps_the_actor_but_hides_it_from_search(self, directory: Directory) -> None:
        name = f"Atelier à archiver {uuid.uuid4().hex[:6]}"
        created = await create(directory, name=name)
        async with directory.client() as http:
            archived = await http.post(f"/v1/actors/{created['id']}/archive", headers=directory.admin)
            found = (await http.get("/v1/actors", params={"text": name})).json()
            still = await http.get(f"/v1/actors/{created['id']}")
        assert archived.json()["status"] == "archived"
        assert all(e["node"]["id"] != created["id"] for e in found["edges"])
        assert still.status_code == 200


class TestSearch:
    @pytest.fixture(scope="class")
    async def places(self, directory: Directory) -> dict[str, dict[str, Any]]:
        tag = uuid.uuid4().hex[:6]
        made = {
            "ressourcerie": await create(
                directory, name=f"Ressourcerie Éco{tag}", location={"lat": 47.2230, "lon": 5.9650}
            ),
            "velo": await create(
                directory,
                name=f"Atelier vélo {tag}",
                themes=["mobilite"],
                activities=[],
                qpv_code=None,
                location={"lat": 47.2400, "lon": 6.0300},
            ),
            "far": await create(
                directory,
                name=f"Ressourcerie lointaine {tag}",
                commune_code="67482",
                location={"lat": STRASBOURG[0], "lon": STRASBOURG[1]},
                qpv_code=None,
            ),
            "coop": await create(
                directory,
                name=f"SCIC Énergie {tag}",
                kind="cooperative",
                themes=["energie"],
                activities=[],
                qpv_code=None,
                commune_code="64102",
                location={"lat": 43.4929, "lon": -1.4748},
            ),
        }
        made["tag"] = {"value": tag}
        return made

    async def get(self, directory: Directory, **params: Any) -> dict[str, Any]:
        async with directory.client() as http:
            response = await http.get("/v1/actors", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def ids(self, page: dict[str, Any]) -> list[str]:
        return [edge["node"]["id"] for edge in page["edges"]]

    async def test_text_is_accent_insensitive_and_tolerates_typos(self, directory: Directory, places: Any) -> None:
        tag = places["tag"]["value"]
        for text in (f"ressourcerie eco{tag}", f"RESSOURCERIE ÉCO{tag}", f"resourcerie eco{tag}"):
            found = self.ids(await self.get(directory, text=text))
            assert places["ressourcerie"]["id"] in found, text

    async def test_text_finds_an_actor_by_another_name_of_its_activity(self, directory: Directory) -> None:
        tag = uuid.uuid4().hex[:6]
        trocante = await create(
            directory, name=f"La Trocante {tag}", description="Recyclerie de quartier : collecte, tri et revente."
        )
        # "ressourcerie" is not in its words: the field's synonyms (recyclerie) find it, every other word still counts.
        assert trocante["id"] in self.ids(await self.get(directory, text=f"ressourcerie {tag}"))
        assert trocante["id"] in self.ids(await self.get(directory, text=f"Ressourceries trocante {tag}"))
        assert trocante["id"] not in self.ids(await self.get(directory, text=f"ressourcerie {tag} concerts"))

    async def test_near_sorts_by_distance_and_reports_it(self, directory: Directory, places: Any) -> None:
        page = await self.get(directory, lat=BESANCON[0], lon=BESANCON[1], radius_km=300, first=100)
        found = self.ids(page)
        assert places["velo"]["id"] in found and places["far"]["id"] in found
        assert places["coop"]["id"] not in found, "Bayonne is beyond 300 km"
        distances = [edge["node"]["distance_km"] for edge in page["edges"]]
        assert distances == sorted(distances)
        far = next(e["node"] for e in page["edges"] if e["node"]["id"] == places["far"]["id"])
        assert far["distance_km"] == pytest.approx(haversine_km(BESANCON, STRASBOURG), rel=0.01)

    async def test_each_filter_alone(self, directory: Directory, places: Any) -> None:
        assert places["coop"]["id"] in self.ids(await self.get(directory, kinds="cooperative", first=100))
        assert places["velo"]["id"] in self.ids(await self.get(directory, themes="mobilite", first=100))
        in_dep = self.ids(await self.get(directory, territory="DEP-67", first=100))
        assert places["far"]["id"] in in_dep and places["velo"]["id"] not in in_dep
        epci = territories.resolve_commune("25056").epci
        assert places["velo"]["id"] in self.ids(await self.get(directory, territory=f"EPCI-{epci}", first=100))
        qpv = self.ids(await self.get(directory, in_qpv="true", first=100))
        assert places["ressourcerie"]["id"] in qpv and places["velo"]["id"] not in qpv

    async def test_filters_combined(self, directory: Directory, places: Any) -> None:
        tag = places["tag"]["value"]
        page = await self.get(
            directory,
            text=f"ressourcerie eco{tag}",
            territory="REG-27",
            themes="reemploi",
            lat=BESANCON[0],
            lon=BESANCON[1],
            radius_km=50,
            with_total="true",
            sort="relevance",
        )
        found = self.ids(page)
        assert found[0] == places["ressourcerie"]["id"], "the best match comes first"
        assert places["far"]["id"] not in found and places["velo"]["id"] not in found
        assert page["total_count"] == len(found)

    async def test_bad_filters_are_422(self, directory: Directory) -> None:
        async with directory.client() as http:
            for params in (
                {"territory": "DEP-999"},
                {"themes": "nope"},
                {"lat": 47},
                {"after": "garbage"},
                {"sort": "distance"},
                {"first": 1000},
            ):
                response = await http.get("/v1/actors", params=params)
                assert response.status_code == 422, (params, response.text)

    async def test_pagination_is_stable_while_rows_are_inserted(self, directory: Directory) -> None:
        tag = uuid.uuid4().hex[:6]
        for i in range(12):
            await create(directory, name=f"Pagination {tag} {i:02d}", qpv_code=None)
        seen: list[str] = []
        after = None
        inserted = 0
        while True:
            params: dict[str, Any] = {"text": f"pagination {tag}", "sort": "name", "first": 5}
            if after:
                params["after"] = after
            page = await self.get(directory, **params)
            seen += [e["node"]["name"] for e in page["edges"]]
            # Someone registers an actor that sorts before and after the current page.
            await create(directory, name=f"Pagination {tag} 00a{inserted}", qpv_code=None)
            inserted += 1
            if not page["page_info"]["has_next_page"]:
                break
            after = page["page_info"]["end_cursor"]
        originals = [f"Pagination {tag} {i:02d}" for i in range(12)]
        assert [n for n in seen if n in originals] == originals, "no original row skipped or repeated"
        assert len(seen) == len(set(seen))


class TestSnapshotAndBatch:
    async def test_batch_keeps_the_order_asked(self, directory: Directory) -> None:
        a, b = await create(directory), await create(directory)
        async with directory.client() as http:
            response = await http.post("/v1/actors/batch", json={"ids": [b["id"], "nope", a["id"], str(uuid.uuid4())]})
        items = response.json()["items"]
        assert [i and i["id"] for i in items] == [b["id"], None, a["id"], None]

    async def test_snapshot_pages_everything_and_resumes_from_its_watermark(self, directory: Directory) -> None:
        async with directory.client() as http:
            seen: dict[str, int] = {}
            after = None
            while True:
                params: dict[str, Any] = {"limit": 7}
                if after:
                    params["after"] = after
                page = (await http.get("/v1/actors/snapshot", params=params, headers=directory.admin)).json()
                seen.update({item["id"]: item["version"] for item in page["items"]})
                watermark = page["watermark"]
                after = page["next"]
                if not after:
                    break
            total = (
                await http.get("/v1/actors", params={"include_archived": "true", "with_total": "true", "first": 1})
            ).json()["total_count"]
            assert len(seen) == total
            await asyncio.sleep(0.1)
            changed = await create(directory)
            later = (
                await http.get("/v1/actors/snapshot", params={"updated_since": watermark}, headers=directory.admin)
            ).json()
            anonymous = await http.get("/v1/actors/snapshot")
        assert changed["id"] in {item["id"] for item in later["items"]}
        assert "contact" not in later["items"][0]
        assert anonymous.status_code == 401


class TestImport:
    CSV_HEADER = "source_id,name,kind,commune_code,siret,themes,activities,lat,lon,contact_email\n"

    async def post(self, directory: Directory, text: str) -> dict[str, Any]:
        async with directory.client() as http:
            response = await http.post(
                "/v1/actors/import", content=text.encode(), headers={**directory.admin, "Content-Type": "text/csv"}
            )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def test_bad_rows_are_reported_with_line_and_reason_and_good_rows_land(self, directory: Directory) -> None:
        tag = uuid.uuid4().hex[:6]
        text = self.CSV_HEADER + (
            f"{tag}-1,Recyclerie du Neuhof,association,67482,,reemploi,reemploi/fourniture_biens/radius:20,48.55,7.77,\n"
            f"{tag}-2,Sans commune,association,,,reemploi,,,,\n"
            f"{tag}-3,Mauvais SIRET,association,25056,73282932000075,,,,,\n"
            f'{tag}-4,"Atelier ""Le Guidon""\nvélo",association,25056,,mobilite,mobilite/formation/DEP-25,47.24,6.02,a@b.fr\n'
            f"{tag}-5,Thème inconnu,association,25056,,astrologie,,,,\n"
        )
        report = await self.post(directory, text)
        assert report["created"] == 2
        rejected = {(r["line"], r["reason"].split(":")[0]) for r in report["rejected"]}
        assert rejected == {(3, "commune_code"), (4, "siret"), (7, "themes")}

    async def test_a_reimport_updates_and_never_duplicates(self, directory: Directory) -> None:
        tag = uuid.uuid4().hex[:6]
        text = self.CSV_HEADER + f"{tag}-1,Épicerie solidaire,association,79191,,solidarite_alimentaire,,46.32,-0.46,\n"
        first = await self.post(directory, text)
        again = await self.post(directory, text)
        changed = await self.post(directory, text.replace("Épicerie solidaire", "Épicerie solidaire du Clou Bouchet"))
        assert (first["created"], again["unchanged"], changed["updated"]) == (1, 1, 1)
        async with directory.client() as http:
            found = (await http.get("/v1/actors", params={"text": "epicerie solidaire clou bouchet"})).json()
        assert len([e for e in found["edges"] if e["node"]["source_id"] == f"{tag}-1"]) == 1

    async def test_an_identifier_repeated_across_batches_in_flight_keeps_file_order(self, directory: Directory) -> None:
        # Two batches are written at once; the later line of a repeated source id must win.
        tag = uuid.uuid4().hex[:6]
        lines = [f"{tag}-{i},Actrice {i},association,25056,,,,47.24,6.02,\n" for i in range(1, BATCH_SIZE + 30)]
        lines.append(f"{tag}-1,Actrice un renommée,association,25056,,,,47.24,6.02,\n")
        report = await self.post(directory, self.CSV_HEADER + "".join(lines))
        assert (report["created"], report["updated"], report["rejected_count"]) == (BATCH_SIZE + 29, 1, 0)
        async with directory.client() as http:
            found = (await http.get("/v1/actors", params={"text": "actrice renommée", "first": 50})).json()
        names = [e["node"]["name"] for e in found["edges"] if e["node"]["source_id"] == f"{tag}-1"]
        assert names == ["Actrice un renommée"]
