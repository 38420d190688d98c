"""A first-order category-transition Markov chain: the next categories given the last."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ccrec.baselines.popularity import PopularityBacked
from ccrec.baselines.selection import choose
from ccrec.batch import CategoryBatch

#: Candidate smoothing strengths β (pseudo-counts of Popularity per row).
SMOOTHING = (0.1, 1.0, 10.0, 100.0)


class Markov(PopularityBacked):
    """P(c | last past category) from the training examples, smoothed toward Popularity:

    P(c | l) = (T[l, c] + β · pop(c)) / (Σ_c' T[l, c'] + β),

    with T[l, c] the number of training examples whose last past category is l
    and whose future (the task's horizon) holds c. β is chosen on the
    validation users; a user without a past gets Popularity.

    Args:
        num_categories: |C|.
    """

    name = "Markov"

    def __init__(self, num_categories: int) -> None:
        super().__init__(num_categories)
        self.transitions = torch.zeros(num_categories + 1, num_categories + 1)
        self.smoothing = SMOOTHING[0]

    def fit(self, train, valid=None) -> None:
        super().fit(train)
        past = np.asarray(train.past_categories)  # [N, k], right-padded
        lengths = (past != 0).sum(1)
        has_past = lengths > 0
        last = past[np.flatnonzero(has_past), lengths[has_past] - 1]  # [N']
        counts = np.zeros((self.num_categories + 1, self.num_categories + 1))
        np.add.at(counts, last, np.asarray(train.targets)[has_past])
        self.transitions = torch.as_tensor(counts, dtype=torch.float32)
        if valid is not None and len(valid):
            choose(SMOOTHING, self._with_smoothing, valid)

    def _with_smoothing(self, smoothing: float) -> Markov:
        self.smoothing = smoothing
        return self

    def score(self, batch: CategoryBatch) -> Tensor:
        past = batch.past_categories  # [B, k]
        lengths = (past != 0).sum(1)  # [B]
        last = past.gather(1, (lengths - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # [B]
        last = torch.where(lengths > 0, last, torch.zeros_like(last))  # 0: no past
        pop = self.popularity.counts  # [C+1], sums to 1
        rows = self.transitions[last]  # [B, C+1]; row 0 (no past) is all zero
        scores = (rows + self.smoothing * pop) / (rows.sum(1, keepdim=True) + self.smoothing)
        scores[:, 0] = -1.0
        return scores
