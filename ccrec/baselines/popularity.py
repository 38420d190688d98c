"""Non-learned baselines: Popularity, Last-category, and their shared fallback."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ccrec.batch import CategoryBatch


class Popularity:
    """Every user gets the categories most often in the training users' futures.

    Args:
        num_categories: |C|.
    """

    name = "Popularity"

    def __init__(self, num_categories: int) -> None:
        self.num_categories = num_categories
        self.counts = torch.zeros(num_categories + 1)

    def fit(self, train, valid=None) -> None:
        counts = np.asarray(train.targets, np.float64).sum(0)
        counts[0] = 0.0
        self.counts = torch.as_tensor(counts / max(counts.sum(), 1.0), dtype=torch.float32)

    def score(self, batch: CategoryBatch) -> Tensor:
        scores = self.counts.unsqueeze(0).expand(len(batch), -1).clone()
        scores[:, 0] = -1.0
        return scores


class PopularityBacked:
    """A baseline that falls back on (or breaks ties by) Popularity.

    Args:
        num_categories: |C|.
    """

    name = "popularity-backed"

    def __init__(self, num_categories: int) -> None:
        self.num_categories = num_categories
        self.popularity = Popularity(num_categories)

    def fit(self, train, valid=None) -> None:
        self.popularity.fit(train)


class LastCategory(PopularityBacked):
    """The user's past categories, most recent first, then Popularity.

    Args:
        num_categories: |C|.
    """

    name = "Last-category"

    def score(self, batch: CategoryBatch) -> Tensor:
        past = batch.past_categories  # [B, k], oldest first
        k = past.shape[1]
        scores = self.popularity.score(batch)  # [B, C+1] in [0, 1]
        # recency rank: position j gets 1 + (j + 1) / k; later positions overwrite earlier ones
        recency = 1.0 + (torch.arange(k, dtype=scores.dtype) + 1) / k  # [k]
        for j in range(k):
            col = past[:, j]
            present = col != 0
            rows = torch.nonzero(present).squeeze(-1)
            scores[rows, col[rows]] = recency[j]
        scores[:, 0] = -1.0
        return scores
