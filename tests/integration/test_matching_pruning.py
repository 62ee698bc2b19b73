"""The pruned short list of candidates (threshold probes) equals the exhaustive one on dense generated replicas."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.common.db import create_pool, ensure_database, migrate
from services.common.settings import Settings, with_database
from services.contracts import territories
from services.contracts.vocabularies import ACTOR_KINDS, SERVICE_TYPES, THEMES
from services.matching import planner, store
from services.matching.model import NeedCreate, NeedRead
from services.matching.scoring import Weights, qpv_prefix

# Dense clusters (commune, lat, lon) so that a need finds hundreds of actors within a few kilometres.
CITIES = [("25056", 47.2378, 6.0241), ("69123", 45.7640, 4.8357), ("59350", 50.6292, 3.0573)]
THEME_CODES = [t.code for t in THEMES][:6]  # few themes: many partial overlaps
SERVICE_CODES = [s.code for s in SERVICE_TYPES][:4]
KINDS = [k.code for k in ACTOR_KINDS]
COLUMNS = ["id", "version", "name", "kind", "themes", "service_types", "commune_code", "territories", "reach"]
COLUMNS += ["reach_radius_km", "national", "lat", "lon", "qpv_code", "status"]


def actor_rows(count: int, rng: random.Random) -> list[tuple[Any, ...]]:
    rows = []
    for index in range(count):
        code, lat, lon = rng.choice(CITIES)
        commune = territories.resolve_commune(code)
        spread = rng.choice([0.03, 0.1, 0.4, 2.0])  # the city, its suburbs, its région, far away
        area = rng.random()
        located = rng.random() > 0.03
        rows.append(
            (
                uuid.UUID(int=rng.getrandbits(128), version=4),
                1,
                f"Acteur {index}",
                rng.choice(KINDS),
                rng.sample(THEME_CODES, rng.randint(1, 3)),
                rng.sample(SERVICE_CODES, rng.randint(1, 2)),
                code,
                list(territories.territories_of_commune(code)),
                [f"DEP-{commune.departement}"] if 0.6 <= area < 0.75 else [],
                float(rng.choice([5, 20, 50])) if area < 0.4 else 0.0,
                area >= 0.95,
                lat + rng.gauss(0, spread) if located else None,
                lon + rng.gauss(0, spread * 1.4) if located else None,
                f"{qpv_prefix(commune.departement)}{rng.randint(1, 9):02d}M" if rng.random() < 0.1 else None,
                "active" if rng.random() < 0.97 else "inactive",
            )
        )
    return rows


@pytest.fixture(scope="module")
async def replica(postgres_url: str) -> AsyncIterator[asyncpg.Pool]:
    url = with_database(postgres_url, f"maillage_matching_pruning_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    await migrate(url, ["services.common", "services.matching"])
    pool = await create_pool(url, min_size=1, max_size=2)
    rng = random.Random(7)
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("actors", records=actor_rows(15_000, rng), columns=COLUMNS)
        for code, lat, lon in CITIES:
            await conn.execute(
                """INSERT INTO actors (id, version, name, kind, themes, commune_code, territories, lat, lon)
                   VALUES ($1, 1, 'Ville', 'local_authority', '{cooperation_territoriale}', $2, $3, $4, $5)""",
                uuid.uuid5(uuid.NAMESPACE_URL, f"authority-{code}"),
                code,
                list(territories.territories_of_commune(code)),
                lat,
                lon,
            )
        await conn.execute("ANALYZE actors")
    try:
        yield pool
    finally:
        await pool.close()


def need_bodies(count: int, rng: random.Random) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    bodies = []
    for _ in range(count):
        code, lat, lon = rng.choice(CITIES)
        commune = territories.resolve_commune(code)
        elsewhere = rng.choice([city for city in CITIES if city[0] != code])[0]
        perimeter = rng.choice(
            [
                {},
                {"radius_km": 10},
                {"radius_km": 60},
                {"territories": [f"DEP-{commune.departement}"]},
                {"territories": [f"COM-{elsewhere}", f"DEP-{commune.departement}"]},  # each read on its own
            ]
        )
        body = {
            "title": "Besoin",
            "themes": rng.sample(THEME_CODES, rng.randint(1, 3)),
            "service_types": rng.sample(SERVICE_CODES, rng.randint(0, 2)),
            "commune_code": code,
            "location": {"lat": lat + rng.gauss(0, 0.02), "lon": lon + rng.gauss(0, 0.02)},
            "perimeter": perimeter,
            "eligible_kinds": rng.choice([[], [], ["association", "cooperative"]]),
            "qpv_priority": rng.random() < 0.3,
            "kind": "partnership",
            "deadline": (datetime.now(UTC) + timedelta(days=10)).isoformat(),
        }
        bodies.append((uuid.uuid5(uuid.NAMESPACE_URL, f"authority-{code}"), body))
    return bodies


async def need_of(conn: asyncpg.Connection, owner: uuid.UUID, body: dict[str, Any]) -> NeedRead:
    row = await store.insert_need(conn, owner, NeedCreate.model_validate(body))
    need = await store.load_need(conn, row["id"])
    assert need is not None
    return need


@pytest.mark.parametrize("pair_territories", [planner.PAIR_TERRITORIES, 0], ids=["pairs", "one-code"])
@pytest.mark.parametrize("keep", [20, 240])
async def test_pruned_short_list_is_the_exhaustive_one(
    replica: asyncpg.Pool, settings: Settings, keep: int, pair_territories: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "one-code": the probes anywhere read a perimeter larger than PAIR_TERRITORIES, on one code's pairs.
    monkeypatch.setattr(planner, "PAIR_TERRITORIES", pair_territories)
    rng = random.Random(keep)
    weights = Weights.from_settings(settings)
    pruned_probes = 0
    on_cells = {"disc": 0, "perimeter": 0}  # probes that read the grid cells, one key set per theme when all
    async with replica.acquire() as conn:
        transaction = conn.transaction()  # the needs are rolled back
        await transaction.start()
        for owner, body in need_bodies(40, rng):
            need = await need_of(conn, owner, body)
            pruned, probes = await planner.short_list(conn, need, weights, keep)
            exhaustive, [everything] = await planner.short_list(conn, need, weights, keep, prune=False)
            assert pruned == exhaustive, body
            assert len(exhaustive) == min(keep, everything.kept)
            # Pruning happened: some group was read within a disc only, or skipped.
            if len(probes) < 1 + len(planner._groups(need, weights)) or any(
                0 < p.radius_km < float("inf") and p.group != planner.ANY_THEME for p in probes
            ):
                pruned_probes += 1
            for p in probes:
                if math.isfinite(p.radius_km) and planner.reads_cells(p.group, p.radius_km):
                    on_cells["disc"] += 1
                elif not math.isfinite(p.radius_km) and planner.reads_cells(p.group, need.perimeter.radius_km or 0.0):
                    on_cells["perimeter"] += 1
        await transaction.rollback()
    assert pruned_probes >= 10, "the generated needs should exercise the pruning, not only the exhaustive path"
    assert min(on_cells.values()) >= 1, on_cells
