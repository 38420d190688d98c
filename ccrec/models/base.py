"""The one interface of every category recommender (CCRec's stages and baselines).

A recommender is fitted on a training :class:`~ccrec.train.data.UserTable`
(optionally watching a validation one) and then scores **all** categories for
a :class:`~ccrec.batch.CategoryBatch`: ``score(batch) -> [B, C+1]``, higher is
better, column 0 (padding) is ignored. The evaluation harness
(:mod:`ccrec.evaluate`) needs nothing else, so a sequence baseline (SASRec, …)
plugs in by subclassing :class:`NeuralRecommender` and writing ``forward``,
``loss`` and ``score``; the shared trainer does the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import Tensor, nn

from ccrec.batch import CategoryBatch

if TYPE_CHECKING:
    from ccrec.train.data import UserTable
    from ccrec.train.loop import FitResult, TrainConfig


@runtime_checkable
class CategoryRecommender(Protocol):
    """fit / score all categories: what the evaluation harness calls."""

    name: str

    def fit(self, train: UserTable, valid: UserTable | None = None) -> Any:
        """Learn from the training users (``valid`` for early stopping only)."""

    def score(self, batch: CategoryBatch) -> Tensor:
        """[B, C+1] scores of every category for each user; column 0 ignored."""


class NeuralRecommender(nn.Module, ABC):
    """A torch recommender trained by :func:`ccrec.train.loop.fit` on users.

    Subclasses implement :meth:`loss` (a scalar for one batch) and
    :meth:`score`. :meth:`fit` builds seeded loaders and early-stops on the
    validation loss.

    Args:
        train_config: batch size, learning rate, epochs, patience, seed.
    """

    name = "neural"

    def __init__(self, train_config: TrainConfig | None = None) -> None:
        super().__init__()
        self.train_config = train_config

    @abstractmethod
    def loss(self, batch: CategoryBatch) -> Tensor:
        """Scalar training loss of one batch."""

    @abstractmethod
    def score(self, batch: CategoryBatch) -> Tensor:
        """[B, C+1] scores of every category."""

    def fit(self, train: UserTable, valid: UserTable | None = None) -> FitResult:
        from ccrec.train.loop import TrainConfig, fit_tables

        return fit_tables(self, train, valid, self.train_config or TrainConfig())
