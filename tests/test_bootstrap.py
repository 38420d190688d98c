"""Bootstrap intervals and the paired test on hand-computed cases."""

import numpy as np
import pytest

from ccrec.bootstrap import intervals, paired_test, resample_weights, resampled_metrics
from ccrec.metrics import MetricSums


def sums(hit_flags, units=None):
    """Users with top-1 list [1]; a user hits when their truth is {1}."""
    truths = [{1} if h else {2} for h in hit_flags]
    return MetricSums.from_rankings([[1]] * len(truths), truths, ks=(1,),
                                    first_hit_rank=np.where(hit_flags, 1, 2), units=units)


def test_weights_are_seeded_resamples_of_n_units():
    w = resample_weights(7, draws=50, seed=3)
    assert w.shape == (50, 7) and (w.sum(1) == 7).all()
    assert np.array_equal(w, resample_weights(7, draws=50, seed=3))
    assert not np.array_equal(w, resample_weights(7, draws=50, seed=4))


def test_a_resample_equals_the_metrics_of_the_resampled_users():
    rng = np.random.default_rng(0)
    ranked = rng.integers(1, 9, size=(12, 5))
    truths = [set(rng.integers(1, 9, size=rng.integers(1, 4)).tolist()) for _ in range(12)]
    ranks = rng.integers(0, 9, 12)
    full = MetricSums.from_rankings(ranked, truths, first_hit_rank=ranks)
    w = resample_weights(12, draws=3, seed=1)
    got = resampled_metrics(full, w)
    for b in range(3):
        picked = np.repeat(np.arange(12), w[b].astype(int))
        again = MetricSums.from_rankings(ranked[picked], [truths[i] for i in picked],
                                         first_hit_rank=ranks[picked]).metrics()
        for name, value in again.items():
            assert got[name][b] == pytest.approx(value), name


def test_two_users_one_hit_resample_to_0_half_and_1():
    # resamples of 2 users: both the hitter (1/4), one of each (1/2), both the other (1/4)
    hr = resampled_metrics(sums([1, 0]), resample_weights(2, draws=4000, seed=0))["HR@1"]
    assert set(np.unique(hr)) == {0.0, 0.5, 1.0}
    assert np.mean(hr == 0.5) == pytest.approx(0.5, abs=0.03)
    assert intervals(sums([1, 0]), draws=4000)["HR@1"] == (0.0, 1.0)


def test_no_spread_no_interval_width():
    assert intervals(sums([1] * 30))["HR@1"] == (1.0, 1.0)
    assert intervals(sums([0] * 30))["MRR"] == (0.5, 0.5)


def test_paired_test_identical_rows_and_a_row_better_on_every_user():
    same = paired_test(sums([1, 0, 1, 0]), sums([1, 0, 1, 0]), "HR@1", draws=999)
    assert same.diff == 0.0 and same.p == 1.0 and same.diff_ci == (0.0, 0.0)
    better = paired_test(sums([1] * 40), sums([0] * 40), "HR@1", draws=999)
    # Δ = 1 in all 999 resamples: P*(Δ ≤ 0) = 1/1000, p = 2/1000
    assert better.diff == 1.0 and better.p == pytest.approx(2 / 1000)
    mixed = paired_test(sums([1] * 20 + [0] * 20), sums([0] * 20 + [1] * 20), "HR@1")
    assert mixed.diff == 0.0 and mixed.p > 0.5


def test_paired_test_is_clustered_by_unit_and_refuses_other_units():
    # user 0 has 3 replay points (all hits), user 1 has one (a miss)
    a = sums([1, 1, 1, 0], units=np.array([0, 0, 0, 1]))
    assert a.metrics()["HR@1"] == 0.75 and len(a) == 2
    with pytest.raises(ValueError, match="same units"):
        paired_test(a, sums([1, 1]), "HR@1")
