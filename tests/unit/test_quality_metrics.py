"""The quality benchmark's metrics on small rankings computed by hand (bench/quality_metrics.py)."""

from __future__ import annotations

import math

import pytest

from bench.quality_metrics import (
    NeedScores,
    capped_precision,
    dcg,
    must_not_hits,
    ndcg,
    recall,
    score_need,
    summarize,
    top1,
)

# Five relevant actors (a, d ideal; b, c, e acceptable); x, y are unlabelled.
GAINS = {"a": 2, "b": 1, "c": 1, "d": 2, "e": 1}
RANKED = ["a", "x", "b", "y", "c", "d"]


def test_capped_precision_counts_relevant_in_top5_over_min_of_5_and_relevant() -> None:
    assert capped_precision(RANKED, GAINS) == pytest.approx(3 / 5)  # a, b, c among a x b y c
    # Two relevant actors: both in the top 5 is perfect, whatever fills the other three places.
    assert capped_precision(["x", "a", "y", "b", "z"], {"a": 2, "b": 1}) == 1.0
    assert capped_precision(["x", "a", "y", "z", "w", "b"], {"a": 2, "b": 1}) == 0.5
    assert capped_precision([], {"a": 2}) == 0.0


def test_recall_counts_both_grades_within_the_cut() -> None:
    assert recall(RANKED, GAINS) == pytest.approx(4 / 5)  # e is never proposed
    eleven = [f"n{i}" for i in range(10)] + ["a"]
    assert recall(eleven, {"a": 2}) == 0.0  # eleventh is past recall@10
    assert recall(eleven, {"a": 2}, k=11) == 1.0


def test_dcg_uses_linear_gains_and_log2_discounts() -> None:
    assert dcg([2, 0, 1]) == pytest.approx(2 / 1 + 0 + 1 / 2)
    assert dcg([]) == 0.0


def test_ndcg_against_the_best_order_of_the_labels() -> None:
    got = 2 / math.log2(2) + 1 / math.log2(4) + 1 / math.log2(6) + 2 / math.log2(7)  # a, b, c, d at 1, 3, 5, 6
    best = 2 + 2 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5) + 1 / math.log2(6)  # 2, 2, 1, 1, 1
    assert ndcg(RANKED, GAINS) == pytest.approx(got / best)
    assert ndcg(RANKED, GAINS) == pytest.approx(0.786, abs=1e-3)
    assert ndcg(["d", "a", "b", "c", "e"], GAINS) == pytest.approx(1.0)
    # An acceptable actor ranked above the ideal one loses a little, not everything.
    assert ndcg(["b", "a"], {"a": 2, "b": 1}) == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))


def test_top1_wants_the_best_grade_first() -> None:
    assert top1(RANKED, GAINS) == 1.0
    assert top1(["b", "a"], GAINS) == 0.0  # acceptable first while an ideal actor exists
    assert top1(["b"], {"b": 1, "c": 1}) == 1.0  # no ideal actor labelled: an acceptable one is the best
    assert top1(["x", "a"], GAINS) == 0.0
    assert top1([], GAINS) == 0.0


def test_must_not_hits_are_those_in_the_top5() -> None:
    assert must_not_hits(["a", "t", "b", "c", "d", "u"], {"t", "u"}) == ["t"]
    assert must_not_hits(RANKED, set()) == []


def test_a_need_without_relevant_actor_is_right_only_when_nothing_is_proposed() -> None:
    silent = score_need([], {}, ["t"])
    assert silent == NeedScores(precision5=1.0, recall10=1.0, ndcg10=1.0, top1=1.0, must_not5=0)
    weak = score_need(["x", "t"], {}, ["t"])
    assert weak == NeedScores(precision5=0.0, recall10=0.0, ndcg10=0.0, top1=0.0, must_not5=1)


def test_summary_averages_needs_and_counts_must_nots() -> None:
    first = score_need(RANKED, GAINS, ["y"])  # y is 4th: one must-not in the top 5
    second = score_need(["b"], {"a": 2, "b": 1})
    summary = summarize([first, second])
    assert summary.needs == 2
    assert summary.precision5 == pytest.approx((3 / 5 + 1 / 2) / 2)
    assert summary.recall10 == pytest.approx((4 / 5 + 1 / 2) / 2)
    assert summary.top1 == pytest.approx(0.5)
    assert summary.top1_count == 1
    assert summary.must_not5 == 1
    assert summary.needs_with_must_not5 == 1
    assert summarize([]).needs == 0
