"""The labelled quality set (bench/quality) keeps issue 23's targets: a change to scoring that loses them fails here."""

from __future__ import annotations

import json
import uuid

from bench.quality import load_replica, load_set, rank_needs
from bench.quality_metrics import score_need, summarize
from services.common.settings import Settings, with_database


async def test_the_quality_set_reaches_its_targets_and_no_answer_needs_get_no_match(postgres_url: str) -> None:
    quality = load_set()
    url = with_database(postgres_url, f"maillage_quality_set_{uuid.uuid4().hex[:8]}")
    await load_replica(url, quality)
    settings = Settings(_env_file=None, jwt_keys=json.dumps({"b": "b" * 64}), jwt_active_kid="b")
    rankings = await rank_needs(url, quality, settings)
    scores = {n.id: score_need(rankings[n.id], n.gains, n.must_not) for n in quality.needs}
    overall = summarize(list(scores.values()))
    assert overall.precision5 >= 0.85 and overall.recall10 >= 0.90 and overall.ndcg10 >= 0.85, overall
    assert overall.must_not5 == 0, {n: rankings[n][:5] for n, s in scores.items() if s.must_not5}
    silent = [n.id for n in quality.needs if "no_answer" in n.cases]
    assert silent and all(rankings[n] == [] for n in silent), {n: rankings[n] for n in silent}
    # Every need with a real answer is still matched: the no-match rule did not silence one of them.
    assert all(rankings[n.id] for n in quality.needs if n.gains), [n.id for n in quality.needs if not rankings[n.id]]
