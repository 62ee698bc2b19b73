"""PATCH /v1/actors/{id} over real HTTP: only the fields given change, with the rules, rights and versions of PUT."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from services.common.auth import Role
from services.contracts.topics import ACTOR
from tests.integration.directory_fixtures import Directory
from tests.integration.kafka_tools import header, read_topic
from tests.integration.test_directory_api import create, unique_siret

pytestmark = pytest.mark.asyncio


async def patch(
    directory: Directory, actor_id: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with directory.client() as http:
        return await http.patch(f"/v1/actors/{actor_id}", json=body, headers=headers or directory.admin)


def without_bookkeeping(actor: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in actor.items() if k not in {"version", "updated_at", "description"}}


class TestPatch:
    async def test_only_the_fields_given_change(self, directory: Directory) -> None:
        created = await create(directory, siret=unique_siret())
        response = await patch(directory, created["id"], {"description": "Nouvelle description"})
        assert response.status_code == 200, response.text
        patched = response.json()
        assert patched["description"] == "Nouvelle description"
        assert patched["version"] == 2 and response.headers["ETag"] == '"2"'
        assert without_bookkeeping(patched) == without_bookkeeping(created), "every other field is kept"
        async with directory.client() as http:
            stored = (await http.get(f"/v1/actors/{created['id']}", headers=directory.admin)).json()
        assert stored == patched

    async def test_a_patch_says_actor_updated_with_the_new_version(self, directory: Directory) -> None:
        created = await create(directory)
        assert (await patch(directory, created["id"], {"name": "Ressourcerie renommée"})).status_code == 200
        records = await read_topic(directory.settings, ACTOR, expect=1, timeout_s=15, idle_s=0.5)
        mine = [r for r in records if r.key == created["id"].encode()]
        assert [header(r, "ce_type") for r in mine] == [
            "org.maillage.directory.actor.registered",
            "org.maillage.directory.actor.updated",
        ]
        data = json.loads(mine[-1].value)
        assert data["actor"]["name"] == "Ressourcerie renommée" and data["actor"]["version"] == 2
        assert "camille" not in mine[-1].value.decode().lower(), "the contact stays in the directory"

    async def test_derived_fields_follow_a_new_commune(self, directory: Directory) -> None:
        created = await create(directory, qpv_code=None)
        response = await patch(directory, created["id"], {"commune_code": "67482"})
        assert response.status_code == 200, response.text
        assert response.json()["departement"] == "67" and response.json()["commune_code"] == "67482"

    async def test_null_removes_an_optional_field_and_nested_values_are_replaced_whole(
        self, directory: Directory
    ) -> None:
        created = await create(directory)
        response = await patch(directory, created["id"], {"qpv_code": None, "contact": {"name": "Alex Durand"}})
        assert response.status_code == 200, response.text
        assert response.json()["qpv_code"] is None
        assert response.json()["contact"] == {"name": "Alex Durand", "email": None, "phone": None}

    async def test_if_match_is_optional_and_checked_when_given(self, directory: Directory) -> None:
        created = await create(directory)
        ok = await patch(directory, created["id"], {"description": "a"}, {**directory.admin, "If-Match": '"1"'})
        stale = await patch(directory, created["id"], {"description": "b"}, {**directory.admin, "If-Match": '"1"'})
        weak = await patch(directory, created["id"], {"description": "c"}, {**directory.admin, "If-Match": 'W/"2"'})
        malformed = await patch(directory, created["id"], {"description": "d"}, {**directory.admin, "If-Match": "x"})
        assert ok.status_code == 200 and ok.json()["version"] == 2
        assert stale.status_code == 409, stale.text
        assert stale.json()["current_version"] == 2 and stale.json()["errors"][0]["rule"] == "stale"
        assert weak.status_code == 200 and weak.json()["version"] == 3
        assert malformed.status_code == 422 and malformed.json()["errors"][0]["field"] == "If-Match"

    async def test_a_merge_patch_document_is_accepted(self, directory: Directory) -> None:
        created = await create(directory)
        async with directory.client() as http:
            response = await http.patch(
                f"/v1/actors/{created['id']}",
                content=json.dumps({"description": "merge patch"}),
                headers={**directory.admin, "Content-Type": "application/merge-patch+json"},
            )
        assert response.status_code == 200, response.text
        assert response.json()["description"] == "merge patch"

    async def test_an_unknown_actor_is_404(self, directory: Directory) -> None:
        assert (await patch(directory, str(uuid.uuid4()), {"description": "x"})).status_code == 404
        assert (await patch(directory, "not-an-id", {"description": "x"})).status_code == 404


class TestPatchValidation:
    @pytest.mark.parametrize(
        ("body", "field", "rule", "fragment"),
        [
            ({"nonsense": 1}, "nonsense", "extra_forbidden", "not permitted"),
            ({"siret": "73282932000075"}, "siret", "value_error", "SIRET"),
            ({"rna": "W12345"}, "rna", "value_error", "W followed by 9 digits"),
            ({"themes": ["astrologie"]}, "themes", "value_error", "unknown theme"),
            ({"kind": "multinational"}, "kind", "value_error", "unknown actor kind"),
            ({"commune_code": "99999"}, "commune_code", "value_error", "99999"),
            ({"name": ""}, "name", "string_too_short", "at least 2"),
            ({"name": None}, "name", "required", "not removed"),
            # A null themes now empties them (an optional list: see test_directory_rules); a string is no list.
            ({"themes": "reemploi"}, "themes", "list_type", "valid list"),
            ({}, "body", "not_empty", "at least one field"),
        ],
    )
    async def test_bad_input_gets_422_naming_the_field_and_rule(
        self, directory: Directory, body: dict[str, Any], field: str, rule: str, fragment: str
    ) -> None:
        created = await create(directory)
        response = await patch(directory, created["id"], body)
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["code"] == "BAD_USER_INPUT"
        assert problem["errors"][0]["field"] == field and problem["errors"][0]["rule"] == rule
        assert fragment.lower() in json.dumps(problem).lower()

    async def test_a_body_that_is_not_an_object_is_422(self, directory: Directory) -> None:
        created = await create(directory)
        response = await patch(directory, created["id"], ["description"])
        assert response.status_code == 422, response.text

    async def test_rules_across_fields_apply_to_the_patched_actor(self, directory: Directory) -> None:
        created = await create(directory)  # in Besançon (Doubs): no tribunal register
        response = await patch(directory, created["id"], {"local_register": "TJ Strasbourg VOL 1"})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0] == {
            "field": "local_register",
            "rule": "alsace_moselle",
            "message": response.json()["detail"],
        }
        assert "alsace-moselle" in response.json()["detail"].lower()

    async def test_an_identifier_another_actor_holds_is_409_naming_it(self, directory: Directory) -> None:
        siret = unique_siret()
        holder = await create(directory, siret=siret)
        other = await create(directory)
        response = await patch(directory, other["id"], {"siret": siret})
        assert response.status_code == 409, response.text
        assert response.json()["existing_actor_id"] == holder["id"]

    async def test_a_refused_patch_changes_nothing(self, directory: Directory) -> None:
        created = await create(directory)
        await patch(directory, created["id"], {"description": "x", "commune_code": "99999"})
        async with directory.client() as http:
            stored = (await http.get(f"/v1/actors/{created['id']}", headers=directory.admin)).json()
        assert stored == created


class TestPatchRights:
    async def test_an_actor_patches_itself_and_nobody_else(self, directory: Directory) -> None:
        mine = await create(directory)
        other = await create(directory)
        me = directory.token(Role.ACTOR, mine["id"])
        own = await patch(directory, mine["id"], {"description": "Mon texte"}, me)
        theirs = await patch(directory, other["id"], {"description": "Leur texte"}, me)
        assert own.status_code == 200 and own.json()["description"] == "Mon texte"
        assert theirs.status_code == 403

    async def test_an_actor_cannot_change_its_own_kind_but_an_admin_can(self, directory: Directory) -> None:
        mine = await create(directory)
        me = directory.token(Role.ACTOR, mine["id"])
        same = await patch(directory, mine["id"], {"kind": "association"}, me)
        refused = await patch(directory, mine["id"], {"kind": "cooperative"}, me)
        admin = await patch(directory, mine["id"], {"kind": "cooperative"})
        assert same.status_code == 200
        assert refused.status_code == 403 and "kind" in refused.json()["detail"]
        assert admin.status_code == 200 and admin.json()["kind"] == "cooperative"

    @pytest.mark.parametrize(
        ("who", "status"),
        [
            (None, 401),
            ((Role.PARTNER, None, ()), 403),
            ((Role.COLLECTIVITY, "c1", ()), 403),
            ((Role.PARTNER, None, ("directory:write",)), 200),
        ],
    )
    async def test_who_may_patch(self, directory: Directory, who: Any, status: int) -> None:
        created = await create(directory)
        async with directory.client() as http:
            response = await http.patch(
                f"/v1/actors/{created['id']}",
                json={"description": "x"},
                headers=directory.token(*who) if who else {},
            )
        assert response.status_code == status, response.text
