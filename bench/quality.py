"""Matching quality on a hand-labelled set: each need matched by the real engine over its actor pool, then scored.

Run `python -m bench.quality [--details] [--off SETTING ...]`. Prints a table; it is not a test.

The set lives in `bench/quality/`: `actors.csv` (the directory's CSV import format) is the pool,
`needs.yaml` the needs, their graded labels (2 ideal, 1 acceptable, with a justification each),
their must-not actors, their kinds of case, and which pool actors are archived. The pool is loaded
into a matching replica the way the directory would publish it (`row_to_actor` → `to_contract` →
`store.upsert_actor`, archived actors included with their status); each need is inserted and matched
by `service.match_need` in a transaction that is rolled back, and its stored matches, best first,
are its ranking. Metrics: `bench/quality_metrics.py`.

`--json PATH` also writes each run's per-need rankings and scores (to compare two branches).
`--off SETTING` runs the set again with that matching setting at 0 (a door's weight closes the door:
`match_weight_related_theme`, `match_weight_text_door`, `match_weight_service_type_door`), one table per
run; `--doors` does it for each door. With more than one run, a last table compares them overall.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bench.quality_metrics import IDEAL, NeedScores, Summary, must_not_hits, score_need, summarize
from services.common.db import create_pool, ensure_database, migrate
from services.common.embedded import EmbeddedPostgres, free_port
from services.common.settings import Settings, with_database
from services.contracts import territories
from services.contracts.events import ActorV1
from services.directory.imports import read_csv_lines, row_to_actor
from services.directory.model import ActorCreate, ActorRead, derived_geography, to_contract
from services.matching import service, store
from services.matching.model import NeedCreate

QUALITY_DIR = Path(__file__).parent / "quality"
# The settings that switch off the doors of issue 23 (services/contracts/doors.py) when at 0.
DOOR_SETTINGS = ("match_weight_related_theme", "match_weight_text_door", "match_weight_service_type_door")
CASES = ("shared_theme", "adjacent_theme", "activity_area", "premises", "name_trap", "reserved_market", "no_answer")
NEED_FIELDS = ("title", "description", "kind", "themes", "service_types", "eligible_kinds", "qpv_priority")


class SetError(ValueError):
    """The labelled set is inconsistent (names the need and the field)."""


@dataclass(frozen=True)
class LabelledNeed:
    id: str
    cases: tuple[str, ...]
    authority: str  # source id of the publishing local authority
    fields: dict[str, Any]  # NeedCreate fields but place, perimeter and deadline
    commune_code: str | None = None  # the need's place when not the authority's commune
    location: dict[str, float] | None = None
    perimeter: tuple[str, ...] = ()  # territory codes; "EPCI" / "DEP" stand for the authority's own
    radius_km: float | None = None
    gains: dict[str, int] = field(default_factory=dict)  # source id → 2 ideal / 1 acceptable
    must_not: frozenset[str] = frozenset()

    def body(self, authority: ActorCreate) -> NeedCreate:
        commune = territories.resolve_commune(self.commune_code or authority.commune_code)
        own = territories.resolve_commune(authority.commune_code)
        shorthand = {"EPCI": f"EPCI-{own.epci}", "DEP": f"DEP-{own.departement}"}
        location = self.location or (authority.location.model_dump() if authority.location else None)
        return NeedCreate.model_validate(
            {
                **self.fields,
                "commune_code": commune.code,
                "location": location,
                "perimeter": {
                    "territories": [shorthand.get(c, c) for c in self.perimeter],
                    "radius_km": self.radius_km,
                },
                "deadline": (datetime.now(UTC) + timedelta(days=60)).isoformat(),
            }
        )


@dataclass(frozen=True)
class QualitySet:
    pool: dict[str, ActorCreate]  # source id → actor
    archived: frozenset[str]
    needs: list[LabelledNeed]


def load_pool(path: Path) -> dict[str, ActorCreate]:
    """The pool's actors by source id, each row validated as the directory's import would."""
    reader = csv.DictReader(line for line in read_csv_lines(str(path)) if not line.startswith("#"))
    pool: dict[str, ActorCreate] = {}
    for line, row in enumerate(reader, start=2):
        actor = row_to_actor(row)
        if not actor.source_id or actor.source_id in pool:
            raise SetError(f"{path.name} row {line}: source_id missing or repeated ({actor.source_id!r})")
        pool[actor.source_id] = actor
    return pool


def _need(entry: dict[str, Any], pool: dict[str, ActorCreate], archived: frozenset[str]) -> LabelledNeed:
    name = entry.get("id") or "?"

    def fail(where: str, rule: str) -> SetError:
        return SetError(f"need {name}: {where}: {rule}")

    cases = tuple(entry.get("cases") or ())
    if not cases or set(cases) - set(CASES):
        raise fail("cases", f"one or more of {', '.join(CASES)}")
    authority = entry.get("authority", "")
    if authority not in pool or pool[authority].kind != "local_authority":
        raise fail("authority", f"{authority!r} is not a local authority of the pool")
    gains: dict[str, int] = {}
    for actor, label in (entry.get("relevant") or {}).items():
        if actor not in pool:
            raise fail(f"relevant.{actor}", "not in the pool")
        if actor in archived:
            raise fail(f"relevant.{actor}", "archived actors are never relevant")
        if label.get("grade") not in (1, 2) or not str(label.get("why") or "").strip():
            raise fail(f"relevant.{actor}", "needs grade 1 or 2 and a justification (why)")
        gains[actor] = label["grade"]
    must_not = entry.get("must_not") or {}
    for actor, why in must_not.items():
        if actor not in pool or not str(why or "").strip():
            raise fail(f"must_not.{actor}", "an actor of the pool, with a justification")
        if actor in gains:
            raise fail(f"must_not.{actor}", "also labelled relevant")
    if gains and IDEAL not in gains.values():
        raise fail("relevant", "label at least one ideal actor (grade 2), or none for a no_answer need")
    if ("no_answer" in cases) != (not gains):
        raise fail("cases", "no_answer exactly when no actor is relevant")
    if not gains and not str(entry.get("why") or "").strip():
        raise fail("why", "a no_answer need says why nobody answers it")
    return LabelledNeed(
        id=name,
        cases=cases,
        authority=authority,
        fields={key: entry[key] for key in NEED_FIELDS if key in entry},
        commune_code=entry.get("commune_code"),
        location=entry.get("location"),
        perimeter=tuple(entry.get("perimeter") or ()),
        radius_km=entry.get("radius_km"),
        gains=gains,
        must_not=frozenset(must_not),
    )


def load_set(directory: Path = QUALITY_DIR) -> QualitySet:
    """The pool and the labelled needs; SetError naming the need and field when a label is inconsistent."""
    pool = load_pool(directory / "actors.csv")
    data = yaml.safe_load((directory / "needs.yaml").read_text(encoding="utf-8"))
    archived = frozenset((data.get("archived") or {}).keys())
    if archived - pool.keys():
        raise SetError(f"archived: not in the pool: {', '.join(sorted(archived - pool.keys()))}")
    needs = [_need(entry, pool, archived) for entry in data["needs"]]
    if len({n.id for n in needs}) != len(needs):
        raise SetError("needs: ids repeat")
    return QualitySet(pool, archived, needs)


def actor_id(source_id: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"maillage-quality:{source_id}"))


def actor_state(source_id: str, actor: ActorCreate, archived: bool) -> ActorV1:
    """The actor as the directory publishes it (its own `to_contract`)."""
    now = datetime.now(UTC)
    read = ActorRead.model_validate(
        {
            **actor.model_dump(mode="json"),
            **derived_geography(actor.commune_code),
            "id": actor_id(source_id),
            "version": 1,
            "status": "archived" if archived else "active",
            "created_at": now,
            "updated_at": now,
        }
    )
    return to_contract(read)


async def rank_needs(url: str, quality: QualitySet, settings: Settings) -> dict[str, list[str]]:
    """Each need's matches, best first, as source ids (the engine's own order: score, then actor id)."""
    by_id = {actor_id(source): source for source in quality.pool}
    pool = await create_pool(url, min_size=1, max_size=1)
    rankings: dict[str, list[str]] = {}
    try:
        async with pool.acquire() as conn:
            for need in quality.needs:
                authority = quality.pool[need.authority]
                transaction = conn.transaction()
                await transaction.start()
                try:
                    need_id = (
                        await store.insert_need(conn, uuid.UUID(actor_id(need.authority)), need.body(authority))
                    )["id"]
                    await service.match_need(conn, need_id, settings)
                    rows = await store.list_matches(conn, need_id=need_id)
                finally:
                    await transaction.rollback()
                rows = sorted(rows, key=lambda r: (-r["score"], str(r["actor_id"])))
                rankings[need.id] = [by_id[str(r["actor_id"])] for r in rows]
    finally:
        await pool.close()
    return rankings


@contextlib.asynccontextmanager
async def replica(quality: QualitySet, database: str) -> AsyncIterator[str]:
    """An embedded PostgreSQL under .maillage/bench whose `database` holds the set's pool as a matching replica;
    its URL."""
    home = Path(".maillage/bench")
    home.mkdir(parents=True, exist_ok=True)
    postgres = EmbeddedPostgres(home / "postgres", free_port())
    postgres.start()
    try:
        url = with_database(postgres.url, database)
        await load_replica(url, quality)
        yield url
    finally:
        postgres.stop()


async def load_replica(url: str, quality: QualitySet) -> None:
    await ensure_database(url)
    await migrate(url, ["services.common", "services.matching"])
    pool = await create_pool(url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("TRUNCATE actors, actor_texts, needs CASCADE")
            for source, actor in quality.pool.items():
                assert await store.upsert_actor(conn, actor_state(source, actor, source in quality.archived))
        await pool.execute("ANALYZE actors, actor_texts")
    finally:
        await pool.close()


def by_case(quality: QualitySet, scores: dict[str, NeedScores]) -> list[tuple[str, Summary]]:
    rows = [("all", summarize(list(scores.values())))]
    for case in CASES:
        tagged = [scores[n.id] for n in quality.needs if case in n.cases]
        if tagged:
            rows.append((case, summarize(tagged)))
    return rows


def table(title: str, rows: Sequence[tuple[str, Summary]]) -> str:
    lines = [
        title,
        f"{'case':<16} {'needs':>5} {'P@5':>6} {'R@10':>6} {'nDCG@10':>8} {'top-1':>11} {'must-not@5':>11}",
    ]
    for case, s in rows:
        lines.append(
            f"{case:<16} {s.needs:>5} {s.precision5:>6.3f} {s.recall10:>6.3f} {s.ndcg10:>8.3f}"
            f" {s.top1:>5.3f} {s.top1_count:>2}/{s.needs:<2} {s.must_not5:>4} ({s.needs_with_must_not5} needs)"
        )
    return "\n".join(lines)


def comparison(rows: Sequence[tuple[str, Summary]]) -> str:
    """The runs side by side, over every need."""
    width = max(len(title) for title, _ in rows)
    lines = [
        "all needs, each run",
        f"{'run':<{width}} {'P@5':>6} {'R@10':>6} {'nDCG@10':>8} {'top-1':>6} {'must-not@5':>11}",
    ]
    for title, s in rows:
        lines.append(
            f"{title:<{width}} {s.precision5:>6.3f} {s.recall10:>6.3f} {s.ndcg10:>8.3f} {s.top1_count:>3}/{s.needs:<2}"
            f" {s.must_not5:>4} ({s.needs_with_must_not5} needs)"
        )
    return "\n".join(lines)


def details(quality: QualitySet, rankings: dict[str, list[str]], scores: dict[str, NeedScores]) -> str:
    """Each need's top 5 with its labels: ++ ideal, + acceptable, !! must-not, . unlabelled; then missed ones."""
    lines = []
    for need in quality.needs:
        ranked, s = rankings[need.id], scores[need.id]
        marks = []
        for source in ranked[:5]:
            mark = {2: "++", 1: "+"}.get(need.gains.get(source, 0), "!!" if source in need.must_not else ".")
            marks.append(f"{mark}{source}")
        missed = [a for a in need.gains if a not in ranked[:10]]
        lines.append(
            f"{need.id} [{','.join(need.cases)}] P@5 {s.precision5:.2f} R@10 {s.recall10:.2f} nDCG {s.ndcg10:.2f}"
            f" top1 {s.top1:.0f} ({len(ranked)} matches)\n    top 5: {' '.join(marks) or '-'}"
            + (f"\n    missed: {' '.join(missed)}" if missed else "")
            + (f"\n    must-not in top 5: {' '.join(must_not_hits(ranked, need.must_not))}" if s.must_not5 else "")
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    quality = load_set(args.set)
    base = Settings(_env_file=None, jwt_keys=json.dumps({"b": "b" * 64}), jwt_active_kid="b", internal_key="i" * 64)
    variants: list[tuple[str, Settings]] = [("current settings", base)]
    for name in dict.fromkeys([*args.off, *(DOOR_SETTINGS if args.doors else ())]):
        if not name.startswith("match_") or name not in Settings.model_fields:
            raise SystemExit(f"--off {name}: not a matching setting (one of Settings' match_* fields)")
        variants.append((f"{name} = 0", base.model_copy(update={name: 0.0})))
    async with replica(quality, "maillage_bench_quality") as url:
        territories_used = {quality.pool[n.authority].commune_code for n in quality.needs}
        print(
            f"\nMatching quality: {len(quality.needs)} labelled needs over {len(territories_used)} territories,"
            f" {len(quality.pool)} actors ({len(quality.archived)} archived)"
        )
        report: dict[str, Any] = {}
        overall: list[tuple[str, Summary]] = []
        for title, settings in variants:
            rankings = await rank_needs(url, quality, settings)
            scores = {n.id: score_need(rankings[n.id], n.gains, n.must_not) for n in quality.needs}
            report[title] = {
                "summary": {case: asdict(s) for case, s in by_case(quality, scores)},
                "needs": {n: {"ranked": rankings[n], **asdict(scores[n])} for n in rankings},
            }
            overall.append((title, by_case(quality, scores)[0][1]))
            print()
            print(
                table(
                    f"{title} (match_k {settings.match_k}, min score {settings.match_min_score})",
                    by_case(quality, scores),
                )
            )
            if args.details:
                print()
                print(details(quality, rankings, scores))
        if len(overall) > 1:
            print()
            print(comparison(overall))
        if args.json:
            args.json.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
        print(
            "\nP@5 = relevant in top 5 / min(5, relevant); R@10, nDCG@10 (linear gains 2/1); top-1 = first match ideal;"
            "\na no_answer need scores 1 on each metric when nothing is proposed, 0 otherwise."
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", type=Path, default=QUALITY_DIR, help="directory holding actors.csv and needs.yaml")
    parser.add_argument("--details", action="store_true", help="print each need's top 5 and missed actors")
    parser.add_argument("--json", type=Path, help="write per-need rankings and scores there")
    parser.add_argument("--off", action="append", default=[], metavar="SETTING", help="also run with it at 0")
    parser.add_argument("--doors", action="store_true", help="also run with each door switched off")
    asyncio.run(run(parser.parse_args()))
