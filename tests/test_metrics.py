"""Metrics on hand-computed examples."""

from __future__ import annotations

import pytest

from ccrec.metrics import ranking_metrics


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
