"""Personal frequency: the categories the user interacted with most often."""

from __future__ import annotations

import torch
from torch import Tensor

from ccrec.baselines.popularity import PopularityBacked
from ccrec.batch import CategoryBatch


def category_counts(past_categories: Tensor, num_categories: int) -> Tensor:
    """[B, k] past categories (0 = padding) → [B, C+1] counts (column 0 stays 0)."""
    counts = torch.zeros(past_categories.shape[0], num_categories + 1)
    counts.scatter_add_(1, past_categories, torch.ones_like(past_categories, dtype=torch.float))
    counts[:, 0] = 0.0
    return counts


class PersonalFrequency(PopularityBacked):
    """Categories ranked by how often they occur in the user's past CIs (the
    same last ``max_past`` CIs every row sees); ties and unseen categories in
    Popularity order, so a newcomer gets Popularity.

    Args:
        num_categories: |C|.
    """

    name = "Personal-frequency"

    def score(self, batch: CategoryBatch) -> Tensor:
        # popularity ∈ [0, 1) sums to 1: one more occurrence always outranks it
        scores = category_counts(batch.past_categories, self.num_categories)
        scores += self.popularity.score(batch).clamp(min=0.0)
        scores[:, 0] = -1.0
        return scores
