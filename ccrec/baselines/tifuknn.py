"""TIFU-KNN: personal time-decayed frequency mixed with the nearest users'.

Hu, Y., He, X., Chen, J., Kwok, J., & Zhu, M. (2020). "Modeling Personalized
Item Frequency Information for Next-basket Recommendation." SIGIR 2020.

A user's history vector is the time-decayed mean of their past category
interactions' one-hot vectors, v_u = Σ_j r^{L−1−j} e_{c_j} / Σ_j r^{L−1−j}
(L past CIs, the most recent weighs 1; each CI is one "basket" of one
category, so the paper's within-group decay is not needed). The prediction is

    p_u = α · v_u + (1 − α) · mean of the k most cosine-similar neighbours' v,

neighbours being the training users (each at their latest training example,
i.e. their cutoff: examples are stored sorted by user, then origin).
Categories with equal score, and users without a past, follow Popularity.
r, k and α are chosen on the validation users.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ccrec.baselines.popularity import PopularityBacked
from ccrec.baselines.selection import choose
from ccrec.batch import CategoryBatch


@dataclass(frozen=True)
class TIFUConfig:
    """Hyperparameters of TIFU-KNN.

    Args:
        decay: r, the weight ratio of a CI to the next more recent one.
        neighbours: k, the number of nearest training users.
        alpha: α, the weight of the user's own vector.
    """

    decay: float = 0.8
    neighbours: int = 100
    alpha: float = 0.7


#: The validation grid (3 × 3 × 3 settings).
GRID = tuple(TIFUConfig(r, k, a) for r, k, a in itertools.product(
    (0.6, 0.8, 1.0), (20, 100, 300), (0.5, 0.7, 0.9)))
#: Popularity's weight in the score: below any real difference of TIFU scores.
TIE_BREAK = 1e-6


def history_vectors(past_categories: Tensor, num_categories: int, decay: float) -> Tensor:
    """[B, k] past categories (oldest first, right-padded) → [B, C+1] decayed means."""
    present = past_categories != 0  # [B, k]
    lengths = present.sum(1, keepdim=True)  # [B, 1]
    position = torch.arange(past_categories.shape[1]).unsqueeze(0)  # [1, k]
    weights = torch.pow(torch.tensor(decay), (lengths - 1 - position).clamp(min=0).float())
    weights = weights * present  # [B, k]
    vectors = torch.zeros(past_categories.shape[0], num_categories + 1)
    vectors.scatter_add_(1, past_categories, weights)
    vectors[:, 0] = 0.0
    return vectors / weights.sum(1, keepdim=True).clamp(min=1e-12)


class TIFUKNN(PopularityBacked):
    """TIFU-KNN over category interactions (see the module docstring).

    Args:
        num_categories: |C|.
        config: r, k, α; :meth:`fit` replaces it by the best of :data:`GRID`
            on the validation users when they are given.
    """

    name = "TIFU-KNN"

    def __init__(self, num_categories: int, config: TIFUConfig | None = None) -> None:
        super().__init__(num_categories)
        self.config = config or TIFUConfig()
        self.neighbour_past = torch.zeros(0, 1, dtype=torch.long)
        self._pool: tuple[float, Tensor] | None = None

    def fit(self, train, valid=None) -> None:
        super().fit(train)
        users = np.asarray(train.users)
        last_row = len(users) - 1 - np.unique(users[::-1], return_index=True)[1]
        past = torch.as_tensor(np.asarray(train.past_categories)[np.sort(last_row)])
        self.neighbour_past = past[(past != 0).any(1)]
        if valid is not None and len(valid):
            self.config = choose(GRID, self._with_config, valid)

    def _with_config(self, config: TIFUConfig) -> TIFUKNN:
        self.config = config
        return self

    def _neighbour_vectors(self) -> Tensor:
        """Unit-normalised history vectors of the neighbour pool, cached per decay."""
        if self._pool is None or self._pool[0] != self.config.decay:
            vectors = history_vectors(self.neighbour_past, self.num_categories,
                                      self.config.decay)
            self._pool = (self.config.decay, vectors)
        return self._pool[1]

    def score(self, batch: CategoryBatch) -> Tensor:
        c = self.config
        own = history_vectors(batch.past_categories, self.num_categories, c.decay)  # [B, C+1]
        pool = self._neighbour_vectors()  # [M, C+1]
        similarity = torch.nn.functional.normalize(own, dim=1) @ torch.nn.functional.normalize(
            pool, dim=1).T  # [B, M] cosine
        k = min(c.neighbours, pool.shape[0])
        nearest = similarity.topk(k, dim=1).indices  # [B, k]
        neighbours = pool[nearest].mean(1) if k else torch.zeros_like(own)  # [B, C+1]
        scores = c.alpha * own + (1 - c.alpha) * neighbours
        has_past = (batch.past_categories != 0).any(1, keepdim=True)
        scores = torch.where(has_past, scores, torch.zeros_like(scores))
        scores = scores + TIE_BREAK * self.popularity.score(batch).clamp(min=0.0)
        scores[:, 0] = -1.0
        return scores
