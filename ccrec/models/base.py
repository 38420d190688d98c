"""The one interface of every category recommender (CCRec's stages and baselines).

The evaluation harness (:mod:`ccrec.evaluate`) calls two methods: ``fit`` on a
training :class:`~ccrec.data.tables.UserTable` (optionally watching a
validation one) and ``score(batch) -> [B, C+1]`` for a
:class:`~ccrec.batch.CategoryBatch`, higher is better, column 0 (padding)
ignored. A counting baseline (Popularity) implements both itself.

A torch model is a :class:`NeuralRecommender`: it defines ``loss`` and
``score`` only. Fitting it is the trainer's job:
:class:`ccrec.train.loop.Trainable` pairs the model with its
:class:`TrainConfig` and is the ``fit``/``score`` recommender the harness
calls, so a sequence baseline (SASRec, …) plugs in by writing ``forward``,
``loss`` and ``score``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import Tensor, nn

from ccrec.batch import CategoryBatch

if TYPE_CHECKING:
    from ccrec.data.tables import UserTable


@dataclass(frozen=True)
class TrainConfig:
    """How one model (or cascade stage) is trained.

    Args:
        epochs: most epochs.
        batch_size: examples per batch.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        patience: stop after this many epochs without validation improvement.
        min_delta: smallest change that counts as an improvement.
        monitor: validation quantity for early stopping (``loss`` is minimised,
            anything else, e.g. ``HR@1``, maximised).
        grad_clip: clip the gradient norm to this (0 = off).
        validate_initial: also validate the weights before the first epoch;
            they are kept if no epoch beats them (a residual scorer that
            starts as M1 then never ends worse than M1 on validation).
        seed: seeds torch, numpy, random and the loader's shuffling.
        num_workers: DataLoader worker processes.
        progress: show progress bars.
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 3
    min_delta: float = 1e-4
    monitor: str = "loss"
    grad_clip: float = 0.0
    validate_initial: bool = False
    seed: int = 0
    num_workers: int = 0
    progress: bool = True


@runtime_checkable
class CategoryRecommender(Protocol):
    """fit / score all categories: what the evaluation harness calls."""

    name: str

    def fit(self, train: UserTable, valid: UserTable | None = None) -> Any:
        """Learn from the training users (``valid`` for early stopping only)."""

    def score(self, batch: CategoryBatch) -> Tensor:
        """[B, C+1] scores of every category for each user; column 0 ignored."""


class NeuralRecommender(nn.Module, ABC):
    """A torch recommender: a loss to train on and scores of every category.

    Subclasses implement :meth:`loss` (a scalar for one batch) and
    :meth:`score`, and :meth:`prepare` when they need state computed from the
    training users before the first step.
    """

    name = "neural"

    @abstractmethod
    def loss(self, batch: CategoryBatch) -> Tensor:
        """Scalar training loss of one batch."""

    @abstractmethod
    def score(self, batch: CategoryBatch) -> Tensor:
        """[B, C+1] scores of every category."""

    def prepare(self, train: UserTable) -> None:
        """Set data-dependent state from the training users; called once before training."""
