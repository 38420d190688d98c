"""Metrics on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from ccrec.metrics import MetricSums, ranking_metrics


def test_hand_computed_example():
    ranked = [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    truths = [{2, 9, 11}, {1}]
    m = ranking_metrics(ranked, truths, ks=(1, 3, 5))
    # user 1: hits@1 = 0, @3 = 1 (2), @5 = 1; user 2: no hit at all; |γ| = 3 + 1 = 4
    assert m["HR@1"] == 0.0 and m["HR@3"] == 0.5 and m["HR@5"] == 0.5
    assert m["Precision@1"] == 0.0
    assert m["Precision@3"] == pytest.approx(1 / 6)
    assert m["Precision@5"] == pytest.approx(1 / 10)
    assert m["Recall@3"] == pytest.approx(1 / 4) and m["Recall@5"] == pytest.approx(1 / 4)
    p, r = 1 / 6, 1 / 4
    assert m["F1@3"] == pytest.approx(2 * p * r / (p + r))
    assert m["F1@1"] == 0.0


def test_micro_average_not_macro():
    ranked = [[1, 2, 3], [4, 5, 6]]
    truths = [{1}, {4, 7, 8, 9}]
    m = ranking_metrics(ranked, truths, ks=(1, 3))
    assert m["HR@1"] == 1.0
    assert m["Precision@1"] == 1.0
    # micro: (1 + 1) / (1 + 4), not the macro mean (1 + 1/4) / 2
    assert m["Recall@1"] == pytest.approx(2 / 5)
    assert m["Precision@3"] == pytest.approx(2 / 6)


def test_mrr_from_the_rank_of_the_first_hit():
    ranked = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    truths = [{1}, {6, 11}, {12}]
    sums = MetricSums.from_rankings(ranked, truths, ks=(1, 3), first_hit_rank=np.array([1, 3, 0]))
    # 1/1 + 1/3 + 0 (no true category ranked at all) over 3 points
    assert sums.metrics()["MRR"] == pytest.approx((1 + 1 / 3) / 3)
    assert np.isnan(MetricSums.from_rankings(ranked, truths, ks=(1,)).metrics()["MRR"])
    assert "MRR" not in ranking_metrics(ranked, truths, ks=(1,))


def test_points_add_up_per_unit_and_the_metrics_do_not_change():
    ranked = [[1, 2], [3, 4], [5, 6]]
    truths = [{1}, {9}, {6, 7}]
    ranks = np.array([1, 0, 2])
    per_point = MetricSums.from_rankings(ranked, truths, ks=(1, 2), first_hit_rank=ranks)
    per_user = MetricSums.from_rankings(ranked, truths, ks=(1, 2), first_hit_rank=ranks,
                                        units=np.array([7, 7, 3]))
    assert len(per_user) == 2
    assert per_user.points.tolist() == [1, 2]  # unit 3 first (sorted), then unit 7
    assert per_user.hit_points[:, 1].tolist() == [1, 1]
    assert per_user.truths.tolist() == [2, 2]
    assert per_user.metrics() == per_point.metrics()
    assert per_user.metrics()["HR@2"] == pytest.approx(2 / 3)
    assert per_user.metrics()["Recall@2"] == pytest.approx(2 / 4)
    assert per_user.metrics()["MRR"] == pytest.approx((1 + 0 + 1 / 2) / 3)
