"""Top-k metrics of category recommendation (paper §6.3, ARCHITECTURE.md).

For evaluation points t = 1..N (a user at their cutoff, or one replayed
moment) with top-k list L_t (k categories) and true future set γ_t,
hits_t@k = |L_t ∩ γ_t|:

* HR@k = (1/N) Σ_t 1[hits_t@k ≥ 1]                 (share of points with a hit)
* Precision@k = Σ_t hits_t@k / Σ_t |L_t|           (micro-averaged; |L_t| = k)
* Recall@k = Σ_t hits_t@k / Σ_t |γ_t|               (micro-averaged)
* F1@k = 2·P@k·R@k / (P@k + R@k)                    (0 when P + R = 0)
* MRR = (1/N) Σ_t 1 / rank_t, rank_t the position of the best-ranked true
  category in the full ranking (needs every category ranked; NaN otherwise).

Every metric is a ratio of sums over points, so it is kept as per-*unit*
sums (:class:`MetricSums`): a unit is a user, and a replayed user's points
add up into one unit. Resampling units (:mod:`ccrec.bootstrap`) is then a
weighted sum of these columns: the bootstrap is clustered by user.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ccrec.data.tables import UserTable, make_loader

KS = (1, 3, 5)
#: The paper's column order (Tables 3–8), then MRR.
COLUMNS = (
    "HR@1", "HR@3", "HR@5", "Precision@3", "Precision@5",
    "Recall@1", "Recall@3", "Recall@5", "F1@1", "F1@3", "F1@5", "MRR",
)


@dataclass(frozen=True)
class MetricSums:
    """Per-unit sums behind the metrics.

    Args:
        ks: the cut-offs k.
        points: [n] evaluation points of each unit.
        hit_points: [n, K] points with at least one hit in the top k.
        hits: [n, K] hits in the top k.
        predicted: [n, K] categories recommended in the top k.
        truths: [n] true future categories, summed over points.
        reciprocal_rank: [n] Σ 1/rank of the first hit (NaN when not ranked fully).
        units: [n] the units' ids, ascending (rows of separate runs must match).
    """

    ks: tuple[int, ...]
    points: np.ndarray
    hit_points: np.ndarray
    hits: np.ndarray
    predicted: np.ndarray
    truths: np.ndarray
    reciprocal_rank: np.ndarray
    units: np.ndarray

    def __len__(self) -> int:
        return len(self.points)

    @classmethod
    def from_rankings(
        cls, ranked: Sequence[Sequence[int]] | np.ndarray, truths: Iterable[Iterable[int]],
        ks: Sequence[int] = KS, first_hit_rank: np.ndarray | None = None,
        units: np.ndarray | None = None,
    ) -> MetricSums:
        """Sums of ranked lists against true sets, one point per list.

        Args:
            ranked: per point, its ranked categories (at least max k of them).
            truths: per point, γ_t.
            ks: the cut-offs.
            first_hit_rank: per point, the 1-based rank of the best-ranked true
                category in the full ranking (0 if none is ranked); None → no MRR.
            units: per point, its unit (e.g. user); None → every point is a unit.
                Units come out sorted.
        """
        ks = tuple(ks)
        truths = [np.asarray(list(t), np.int64).reshape(-1) for t in truths]
        n = len(truths)
        top = np.asarray(ranked, np.int64).reshape(n, -1)  # [n, w]
        flat = np.concatenate(truths) if n else np.zeros(0, np.int64)
        width = int(max(top.max(initial=0), flat.max(initial=0))) + 1
        member = np.zeros((n, width), bool)  # [n, C+1] multi-hot γ
        member[np.repeat(np.arange(n), [len(t) for t in truths]), flat] = True
        cum = np.cumsum(np.take_along_axis(member, top, 1), 1)  # [n, w] hits so far
        shown = np.array([min(k, top.shape[1]) for k in ks])
        hits = (cum[:, shown - 1] if top.shape[1] else np.zeros((n, len(ks)))).astype(np.float64)
        predicted = np.broadcast_to(shown.astype(np.float64), (n, len(ks))).copy()
        if first_hit_rank is None:
            rr = np.full(n, np.nan)
        else:
            rank = np.asarray(first_hit_rank, np.float64)
            rr = np.where(rank > 0, 1.0 / np.maximum(rank, 1.0), 0.0)
        point_sums = cls(ks, np.ones(n), (hits > 0).astype(np.float64), hits, predicted,
                         member.sum(1).astype(np.float64), rr, np.arange(n))
        return point_sums if units is None else point_sums.by_unit(np.asarray(units))

    def by_unit(self, units: np.ndarray) -> MetricSums:
        """Points summed per unit; ``units[i]`` is point i's unit (sorted in the result)."""
        ids, inverse = np.unique(units, return_inverse=True)

        def add(x: np.ndarray) -> np.ndarray:
            out = np.zeros((len(ids), *x.shape[1:]))
            np.add.at(out, inverse, x)
            return out

        return MetricSums(self.ks, add(self.points), add(self.hit_points), add(self.hits),
                          add(self.predicted), add(self.truths), add(self.reciprocal_rank), ids)

    def columns(self) -> np.ndarray:
        """[n, 3 + 3K] the unit sums side by side (the layout of :func:`metrics_of`)."""
        return np.column_stack([self.points, self.truths, self.reciprocal_rank,
                                self.hit_points, self.hits, self.predicted])

    def metrics(self) -> dict[str, float]:
        """Every metric over all units."""
        values = metrics_of(self.columns().sum(0, keepdims=True), self.ks)
        return {name: float(v[0]) for name, v in values.items()}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64),
                     where=denominator > 0)


def metrics_of(sums: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Metrics from column totals ([B, 3 + 3K], :meth:`MetricSums.columns` summed
    over units, e.g. once per bootstrap resample) → name → [B]."""
    K = len(ks)
    points, truths, rr = sums[:, 0], sums[:, 1], sums[:, 2]
    hit_points, hits, predicted = sums[:, 3:3 + K], sums[:, 3 + K:3 + 2 * K], sums[:, 3 + 2 * K:]
    out: dict[str, np.ndarray] = {}
    for j, k in enumerate(ks):
        out[f"HR@{k}"] = _ratio(hit_points[:, j], points)
    for j, k in enumerate(ks):
        out[f"Precision@{k}"] = _ratio(hits[:, j], predicted[:, j])
    for j, k in enumerate(ks):
        out[f"Recall@{k}"] = _ratio(hits[:, j], truths)
    for k in ks:
        p, r = out[f"Precision@{k}"], out[f"Recall@{k}"]
        out[f"F1@{k}"] = _ratio(2 * p * r, p + r)
    out["MRR"] = np.where(np.isnan(rr), np.nan, _ratio(np.nan_to_num(rr), points))
    return out


def ranking_metrics(
    ranked: Sequence[Sequence[int]] | np.ndarray,
    truths: Iterable[Iterable[int]],
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """The metrics of ranked lists against true future sets (see the module docstring);
    top-k lists alone do not give the rank of a later hit, so no MRR."""
    metrics = MetricSums.from_rankings(ranked, truths, ks).metrics()
    del metrics["MRR"]
    return metrics


@torch.no_grad()
def rankings(recommender: Any, table: UserTable, kmax: int = max(KS),
             batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Top-``kmax`` categories [N, kmax] and the 1-based rank of the first true
    category in the full ranking [N] of ``recommender.score`` on ``table``."""
    if hasattr(recommender, "eval"):
        recommender.eval()
    tops, ranks = [], []
    for batch in make_loader(table, batch_size, shuffle=False):
        scores = recommender.score(batch).clone()  # [B, C+1]
        if torch.isnan(scores).any():
            raise ValueError(f"{getattr(recommender, 'name', recommender)!r} scored NaN")
        scores[:, 0] = -torch.inf
        order = scores.argsort(dim=-1, descending=True, stable=True)  # [B, C+1]
        order = order[order != 0].view(len(order), -1)  # [B, C] padding dropped
        truth = batch.targets.gather(1, order) > 0  # [B, C] is the j-th ranked one true?
        first = truth.float().argmax(1) + 1
        ranks.append(torch.where(truth.any(1), first, torch.zeros_like(first)).numpy())
        tops.append(order[:, :kmax].numpy())
    return np.concatenate(tops), np.concatenate(ranks)


def evaluate_sums(recommender: Any, table: UserTable, ks: Sequence[int] = KS,
                  units: np.ndarray | None = None) -> MetricSums:
    """Per-unit metric sums of ``recommender`` on ``table`` (a unit per row unless
    ``units`` groups rows, e.g. a replayed user's moments)."""
    top, first = rankings(recommender, table, max(ks))
    return MetricSums.from_rankings(top, table.future, ks, first_hit_rank=first,
                                    units=units if units is not None else table.users)


def evaluate_recommender(recommender: Any, table: UserTable,
                         ks: Sequence[int] = KS) -> dict[str, float]:
    """Every metric of ``recommender`` on the rows of ``table`` (no intervals)."""
    return evaluate_sums(recommender, table, ks).metrics()
