"""Offline INSEE reference data: codes validated, former communes resolved, membership derived."""

from __future__ import annotations

import pytest

from services.contracts import territories as t


class TestCommunes:
    @pytest.mark.parametrize(
        ("code", "name", "dep", "reg"),
        [
            ("25056", "Besançon", "25", "27"),
            ("67482", "Strasbourg", "67", "44"),
            ("68224", "Mulhouse", "68", "44"),
            ("64102", "Bayonne", "64", "75"),
            ("79191", "Niort", "79", "75"),
            ("63113", "Clermont-Ferrand", "63", "84"),
            ("69266", "Villeurbanne", "69", "84"),
            ("45284", "Saint-Jean-de-Braye", "45", "24"),
            ("2A004", "Ajaccio", "2A", "94"),
        ],
    )
    def test_the_territories_of_the_field(self, code: str, name: str, dep: str, reg: str) -> None:
        commune = t.resolve_commune(code)
        assert (commune.name, commune.departement, commune.region) == (name, dep, reg)

    def test_besancon_is_in_its_metropole(self) -> None:
        commune = t.resolve_commune("25056")
        assert "Besançon" in (t.epci_name(commune.epci or "") or "")
        assert t.territories_of_commune("25056") == ("COM-25056", f"EPCI-{commune.epci}", "DEP-25", "REG-27")

    def test_arrondissements_and_former_communes_resolve_to_the_current_commune(self) -> None:
        assert t.resolve_commune("75111").code == "75056"  # Paris 11e
        assert t.resolve_commune("69381").code == "69123"  # Lyon 1er
        # Cordieux, commune associée to Montluel (Ain).
        assert t.resolve_commune("01120").code == "01262"
        assert t.normalize_territory("COM-13201") == "COM-13055"

    @pytest.mark.parametrize(
        ("code", "canonical", "name"),
        [
            ("COM-25056", "COM-25056", "Besançon"),
            ("com-75111", "COM-75056", "Paris"),  # an arrondissement gives its commune
            ("EPCI-243500139", "EPCI-243500139", "Rennes Métropole"),
            ("DEP-2A", "DEP-2A", "Corse-du-Sud"),
            ("REG-53", "REG-53", "Bretagne"),
        ],
    )
    def test_a_territory_code_is_named(self, code: str, canonical: str, name: str) -> None:
        found = t.territory_named(code)
        assert found is not None and (found.code, found.name) == (canonical, name)
        # The same population as the search gives it (an EPCI's, a département's, a région's: their communes').
        [searched] = [x for x in t.search_territories(name, (found.kind,), 50) if x.code == canonical]
        assert found.population == searched.population > 0

    @pytest.mark.parametrize("code", ["COM-99999", "DEP-00", "EPCI-123", "25056", ""])
    def test_an_unknown_territory_code_has_no_name(self, code: str) -> None:
        assert t.territory_named(code) is None

    @pytest.mark.parametrize("code", ["123", "2C001", "ABCDE", ""])
    def test_bad_commune_formats(self, code: str) -> None:
        with pytest.raises(t.TerritoryError) as error:
            t.resolve_commune(code)
        assert error.value.rule == "bad_format"

    def test_unknown_commune(self) -> None:
        with pytest.raises(t.TerritoryError, match="COM-99999") as error:
            t.resolve_commune("99999")
        assert error.value.rule == "unknown_commune"


class TestTerritoryCodes:
    @pytest.mark.parametrize("code", ["COM-123", "DEP-", "XYZ-25", "EPCI-12", "REG-1", "25056", "DEP-25-1"])
    def test_bad_formats(self, code: str) -> None:
        with pytest.raises(t.TerritoryError) as error:
            t.normalize_territory(code)
        assert error.value.rule == "bad_format"

    @pytest.mark.parametrize(
        ("code", "rule"),
        [
            ("EPCI-123456789", "unknown_epci"),
            ("DEP-99", "unknown_departement"),
            ("REG-99", "unknown_region"),
            ("COM-99999", "unknown_commune"),
        ],
    )
    def test_unknown_codes(self, code: str, rule: str) -> None:
        with pytest.raises(t.TerritoryError) as error:
            t.normalize_territory(code)
        assert error.value.rule == rule

    def test_canonical_forms(self) -> None:
        assert t.normalize_territory(" dep-2a ") == "DEP-2A"
        assert t.normalize_territory("DEP-971") == "DEP-971"

    def test_membership(self) -> None:
        epci = t.resolve_commune("25056").epci
        assert t.contains(f"EPCI-{epci}", "25056")
        assert not t.contains("DEP-25", "67482")
        assert t.contains("REG-44", "68224")
        assert "25056" in t.communes_in(f"EPCI-{epci}")
        assert 500 < len(t.communes_in("DEP-25")) < 700

    def test_the_whole_country_is_there(self) -> None:
        communes = t.all_communes()
        assert len(communes) > 34_000
        assert len({c.departement for c in communes.values()}) >= 101  # + overseas collectivities
        assert len({c.region for c in communes.values()}) >= 18

    def test_commune_search_ignores_accents(self) -> None:
        assert t.search_communes("besanc")[0].code == "25056"
        assert t.search_communes("SAINT-JEAN-DE-BR")[0].code == "45284"


class TestSearchByName:
    def test_a_prefix_finds_the_commune_then_the_territories_with_a_word_starting_so(self) -> None:
        found = t.search_territories("besan", limit=5)
        assert [(x.code, x.kind) for x in found[:2]] == [("COM-25056", "COM"), ("EPCI-242500361", "EPCI")]

    def test_accents_case_hyphens_and_apostrophes_are_ignored(self) -> None:
        assert t.search_territories("SAINT ETIENNE", ("COM",), 1)[0].code == "COM-42218"
        assert t.search_territories("côtes d armor", ("DEP",), 1)[0].code == "DEP-22"

    def test_kinds_and_limit_are_kept_and_the_most_populous_come_first(self) -> None:
        found = t.search_territories("doubs", ("DEP", "EPCI"), 4)
        assert found[0].code == "DEP-25" and len(found) == 4
        assert {x.kind for x in found} <= {"DEP", "EPCI"}
        epcis = [x.population for x in found[1:]]
        assert epcis == sorted(epcis, reverse=True) and epcis[0] > 0

    def test_nothing_matches_nothing(self) -> None:
        assert t.search_territories("   ") == []
        assert t.search_territories("zzqqx") == []
