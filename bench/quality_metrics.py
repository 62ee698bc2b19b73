"""Ranking-quality metrics for labelled needs (pure functions, no I/O): precision, recall, nDCG, top 1, must-nots.

`ranked` is a need's matches, best first (actor ids); `gains` maps each labelled actor to its grade
(2 ideal, 1 acceptable; unlabelled actors count 0); `must_not` lists actors that should never reach
the top 5.

A need with no relevant actor ("no good answer") is right only when matching proposes nothing: for it,
precision@5, recall@10, nDCG@10 and top 1 are all 1.0 when `ranked` is empty and 0.0 otherwise —
every actor proposed for it is a wrong proposal, and the one correct answer is silence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

IDEAL = 2
ACCEPTABLE = 1


def _relevant(gains: Mapping[str, int]) -> set[str]:
    return {actor for actor, grade in gains.items() if grade > 0}


def _silence(ranked: Sequence[str]) -> float:
    return 0.0 if ranked else 1.0


def capped_precision(ranked: Sequence[str], gains: Mapping[str, int], k: int = 5) -> float:
    """Relevant actors in the top k over min(k, number relevant): 1.0 when every slot that could be right is."""
    relevant = _relevant(gains)
    if not relevant:
        return _silence(ranked)
    hits = sum(1 for actor in ranked[:k] if actor in relevant)
    return hits / min(k, len(relevant))


def recall(ranked: Sequence[str], gains: Mapping[str, int], k: int = 10) -> float:
    """Share of the relevant actors (either grade) found in the top k."""
    relevant = _relevant(gains)
    if not relevant:
        return _silence(ranked)
    return sum(1 for actor in ranked[:k] if actor in relevant) / len(relevant)


def dcg(grades: Iterable[int]) -> float:
    """Discounted cumulative gain with linear gains: grade / log2(position + 1), positions from 1."""
    return sum(grade / math.log2(position + 1) for position, grade in enumerate(grades, start=1))


def ndcg(ranked: Sequence[str], gains: Mapping[str, int], k: int = 10) -> float:
    """DCG of the top k over the DCG of the best possible top k of the labelled actors."""
    ideal = dcg(sorted((g for g in gains.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return _silence(ranked)
    return dcg(gains.get(actor, 0) for actor in ranked[:k]) / ideal


def top1(ranked: Sequence[str], gains: Mapping[str, int]) -> float:
    """1.0 when the first match carries the need's best grade (an ideal actor when it has one), else 0.0."""
    best = max((g for g in gains.values() if g > 0), default=0)
    if best == 0:
        return _silence(ranked)
    return 1.0 if ranked and gains.get(ranked[0], 0) == best else 0.0


def must_not_hits(ranked: Sequence[str], must_not: Iterable[str], k: int = 5) -> list[str]:
    """The must-not actors present in the top k, in rank order."""
    banned = set(must_not)
    return [actor for actor in ranked[:k] if actor in banned]


@dataclass(frozen=True)
class NeedScores:
    precision5: float
    recall10: float
    ndcg10: float
    top1: float
    must_not5: int  # must-not actors in the top 5


def score_need(ranked: Sequence[str], gains: Mapping[str, int], must_not: Iterable[str] = ()) -> NeedScores:
    return NeedScores(
        precision5=capped_precision(ranked, gains, 5),
        recall10=recall(ranked, gains, 10),
        ndcg10=ndcg(ranked, gains, 10),
        top1=top1(ranked, gains),
        must_not5=len(must_not_hits(ranked, must_not, 5)),
    )


@dataclass(frozen=True)
class Summary:
    needs: int
    precision5: float
    recall10: float
    ndcg10: float
    top1: float  # share of needs whose first match is right
    top1_count: int
    must_not5: int  # must-not actors in top 5s, all needs together
    needs_with_must_not5: int


def summarize(scores: Sequence[NeedScores]) -> Summary:
    """Means over the needs (each need weighs the same); must-nots are counted, not averaged."""
    count = len(scores)
    if count == 0:
        return Summary(0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0)
    return Summary(
        needs=count,
        precision5=sum(s.precision5 for s in scores) / count,
        recall10=sum(s.recall10 for s in scores) / count,
        ndcg10=sum(s.ndcg10 for s in scores) / count,
        top1=sum(s.top1 for s in scores) / count,
        top1_count=sum(1 for s in scores if s.top1 == 1.0),
        must_not5=sum(s.must_not5 for s in scores),
        needs_with_must_not5=sum(1 for s in scores if s.must_not5),
    )
