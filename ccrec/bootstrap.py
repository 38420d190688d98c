"""Bootstrap intervals and paired tests over users, vectorised and seeded.

A resample draws n units (users) with replacement; it is represented by the
multiplicity of every unit, a [B, n] matrix W, so the column totals of all B
resamples are one product ``W @ sums.columns()`` and every metric of
:func:`ccrec.metrics.metrics_of` follows for all resamples at once. Rows
evaluated on the same units with the same seed share W, which makes the
comparison of two rows *paired*: each resample scores both on the same users.

* :func:`intervals` — the 95 % percentile interval of every metric.
* :func:`paired_test` — the difference of one metric between two rows, its
  interval, and the two-sided bootstrap p-value of "no difference":
  p = 2 · min(P*(Δ ≤ 0), P*(Δ ≥ 0)), each share counted as (count + 1) / (B + 1)
  so that p is never 0 from a finite number of resamples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccrec.metrics import MetricSums, metrics_of

DRAWS = 2000
LEVEL = 0.95


def resample_weights(n: int, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """[draws, n] multiplicities of n units in ``draws`` seeded resamples."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(draws, n))
    flat = (picks + np.arange(draws)[:, None] * n).ravel()
    return np.bincount(flat, minlength=draws * n).reshape(draws, n).astype(np.float64)


def resampled_metrics(sums: MetricSums, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric in every resample: name → [B]."""
    if weights.shape[1] != len(sums):
        raise ValueError(f"{weights.shape[1]} resampled units for {len(sums)} units")
    return metrics_of(weights @ sums.columns(), sums.ks)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    if np.isnan(values).all():
        return (float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return (float(lo), float(hi))


def intervals(sums: MetricSums, draws: int = DRAWS, seed: int = 0, level: float = LEVEL,
              weights: np.ndarray | None = None) -> dict[str, tuple[float, float]]:
    """The ``level`` percentile bootstrap interval of every metric (units resampled;
    ``weights`` reuses resamples drawn once for many rows)."""
    if weights is None:
        weights = resample_weights(len(sums), draws, seed)
    resampled = resampled_metrics(sums, weights)
    return {name: _percentiles(values, level) for name, values in resampled.items()}


@dataclass(frozen=True)
class PairedTest:
    """A paired bootstrap comparison of one metric between rows a and b.

    Args:
        metric: the metric's name.
        diff: a − b on all units.
        diff_ci: the percentile interval of a − b.
        p: two-sided bootstrap p-value of a = b.
        draws: the number of resamples.
    """

    metric: str
    diff: float
    diff_ci: tuple[float, float]
    p: float
    draws: int


def paired_test(a: MetricSums, b: MetricSums, metric: str, draws: int = DRAWS,
                seed: int = 0, level: float = LEVEL,
                weights: np.ndarray | None = None) -> PairedTest:
    """Compare ``metric`` of two rows scored on the same units, in the same order."""
    if not (np.array_equal(a.units, b.units) and np.array_equal(a.points, b.points)):
        raise ValueError("a paired test needs both rows scored on the same units")
    if weights is None:
        weights = resample_weights(len(a), draws, seed)
    draws = len(weights)
    delta = resampled_metrics(a, weights)[metric] - resampled_metrics(b, weights)[metric]
    below = (np.count_nonzero(delta <= 0) + 1) / (draws + 1)
    above = (np.count_nonzero(delta >= 0) + 1) / (draws + 1)
    return PairedTest(metric, a.metrics()[metric] - b.metrics()[metric],
                      _percentiles(delta, level), float(min(1.0, 2 * min(below, above))), draws)
