"""Top-k metrics of category recommendation (paper §6.3, ARCHITECTURE.md).

For users t = 1..N with top-k list L_t (k categories) and true future set γ_t,
hits_t@k = |L_t ∩ γ_t|:

* HR@k = (1/N) Σ_t 1[hits_t@k ≥ 1]                 (share of users with a hit)
* Precision@k = Σ_t hits_t@k / Σ_t |L_t|           (micro-averaged; |L_t| = k)
* Recall@k = Σ_t hits_t@k / Σ_t |γ_t|               (micro-averaged)
* F1@k = 2·P@k·R@k / (P@k + R@k)                    (0 when P + R = 0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

KS = (1, 3, 5)
#: The paper's column order (Tables 3–8).
COLUMNS = (
    "HR@1", "HR@3", "HR@5", "Precision@3", "Precision@5",
    "Recall@1", "Recall@3", "Recall@5", "F1@1", "F1@3", "F1@5",
)


class HitCounter:
    """Accumulates the sums behind the metrics, batch by batch.

    Args:
        ks: the cut-offs k.
    """

    def __init__(self, ks: Sequence[int] = KS) -> None:
        self.ks = tuple(ks)
        self.users = 0
        self.truths = 0
        self.hit_users = dict.fromkeys(self.ks, 0)
        self.hits = dict.fromkeys(self.ks, 0)
        self.predicted = dict.fromkeys(self.ks, 0)

    def add(self, ranked: Sequence[Sequence[int]] | np.ndarray,
            truths: Iterable[Iterable[int]]) -> None:
        """Add users: ``ranked[t]`` their ranked categories (≥ max k), ``truths[t]`` γ_t."""
        for top, truth in zip(ranked, truths, strict=True):
            truth_set = {int(c) for c in truth}
            self.users += 1
            self.truths += len(truth_set)
            top = [int(c) for c in top]
            for k in self.ks:
                h = sum(1 for c in top[:k] if c in truth_set)
                self.hits[k] += h
                self.predicted[k] += len(top[:k])
                self.hit_users[k] += h > 0

    def result(self) -> dict[str, float]:
        """HR@k, Precision@k, Recall@k, F1@k for every k."""
        out: dict[str, float] = {}
        for k in self.ks:
            out[f"HR@{k}"] = self.hit_users[k] / max(self.users, 1)
        for k in self.ks:
            out[f"Precision@{k}"] = self.hits[k] / max(self.predicted[k], 1)
        for k in self.ks:
            out[f"Recall@{k}"] = self.hits[k] / max(self.truths, 1)
        for k in self.ks:
            p, r = out[f"Precision@{k}"], out[f"Recall@{k}"]
            out[f"F1@{k}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
        return out


def ranking_metrics(
    ranked: Sequence[Sequence[int]] | np.ndarray,
    truths: Iterable[Iterable[int]],
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """The metrics of ranked lists against true future sets (see the module docstring)."""
    counter = HitCounter(ks)
    counter.add(ranked, truths)
    return counter.result()
