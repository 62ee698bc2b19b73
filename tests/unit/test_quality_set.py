"""The labelled quality set (bench/quality/) holds together: enough needs and territories, every label valid."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from bench.quality import CASES, QUALITY_DIR, SetError, load_set
from services.contracts import territories
from services.matching.model import NeedCreate
from services.matching.scoring import DEFAULT_EXCLUDED_KINDS

QUALITY = load_set()


def test_the_set_is_large_and_spread_enough() -> None:
    assert len(QUALITY.needs) >= 40
    places = {QUALITY.pool[n.authority].commune_code for n in QUALITY.needs}
    assert len(places) >= 8
    assert 150 <= len(QUALITY.pool) <= 250
    kinds = Counter(case for need in QUALITY.needs for case in need.cases)
    assert set(kinds) == set(CASES), kinds
    assert kinds["no_answer"] >= 1


def test_every_need_is_a_valid_need_body() -> None:
    for need in QUALITY.needs:
        body = need.body(QUALITY.pool[need.authority])
        assert isinstance(body, NeedCreate), need.id
        territories.resolve_commune(body.commune_code)


def test_relevant_actors_could_be_matched_at_all() -> None:
    """A label the hard rules forbid would make the targets unreachable: kinds and archived status are checked."""
    for need in QUALITY.needs:
        eligible = need.fields.get("eligible_kinds") or []
        for source in need.gains:
            actor = QUALITY.pool[source]
            assert source not in QUALITY.archived, (need.id, source)
            assert actor.kind in eligible if eligible else actor.kind not in DEFAULT_EXCLUDED_KINDS, (need.id, source)


def test_reserved_markets_and_archived_actors_have_must_nots() -> None:
    archived_must_nots = {a for need in QUALITY.needs for a in need.must_not if a in QUALITY.archived}
    assert archived_must_nots, "at least one need names an archived actor it must not get"
    for need in QUALITY.needs:
        if "reserved_market" in need.cases:
            eligible = need.fields["eligible_kinds"]
            assert any(QUALITY.pool[a].kind not in eligible for a in need.must_not), need.id


def test_an_inconsistent_label_is_rejected_naming_the_need(tmp_path: Path) -> None:
    data = yaml.safe_load((QUALITY_DIR / "needs.yaml").read_text(encoding="utf-8"))
    first = data["needs"][0]
    first["must_not"] = {next(iter(first["relevant"])): "both relevant and must-not"}
    (tmp_path / "needs.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    (tmp_path / "actors.csv").write_bytes((QUALITY_DIR / "actors.csv").read_bytes())
    with pytest.raises(SetError, match=f"need {first['id']}: must_not.*also labelled relevant"):
        load_set(tmp_path)
