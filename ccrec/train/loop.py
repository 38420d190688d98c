"""The plain-PyTorch training loop, in pieces a distributed trainer can reuse.

* :func:`train_epoch` runs one pass over a loader shard and returns metrics;
  it touches no global state, so Ray Train (or DDP) can call it unchanged with
  a prepared model and a sharded loader.
* :func:`evaluate_epoch` is its no-gradient twin.
* :func:`fit` is the local driver: seeding, epochs, early stopping on a
  validation loader, best-weights restore.
* :class:`Trainable` pairs a :class:`~ccrec.models.base.NeuralRecommender`
  with its :class:`~ccrec.models.base.TrainConfig`: the ``fit``/``score``
  recommender the evaluation harness calls.

A model plugs in through :class:`TrainStep`: ``TrainStep(model)(batch)`` is
``model.loss(batch)`` called through ``nn.Module.__call__``, so wrapping the
step in ``DistributedDataParallel`` synchronises gradients correctly.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ccrec.batch import CategoryBatch
from ccrec.data.tables import Table, UserTable, make_loader
from ccrec.models.base import NeuralRecommender, TrainConfig

log = logging.getLogger(__name__)


class TrainStep(nn.Module):
    """``forward(batch) = model.loss(batch)``: the module to wrap in DDP.

    Args:
        model: any module with a ``loss(batch) -> scalar`` method.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> torch.Tensor:
        return self.model.loss(batch)  # type: ignore[operator]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def train_epoch(
    step: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    *,
    epoch: int = 0,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader`` (a shard under DDP): returns ``{"loss", "examples", "seconds"}``.

    Args:
        step: a :class:`TrainStep` (optionally DDP-wrapped): ``step(batch)`` → loss.
        loader: yields batches with ``.to(device)``.
        optimizer: updates ``step``'s parameters.
        config: grad clipping and progress settings.
        epoch: for the progress bar only.
    """
    step.train()
    device = _device_of(step)
    total, examples, started = 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=f"{desc} {epoch}", leave=False, disable=not config.progress)
    for batch in bar:
        batch = batch.to(device)
        loss = step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(step.parameters(), config.grad_clip)
        optimizer.step()
        n = len(batch)
        total += float(loss.detach()) * n
        examples += n
        bar.set_postfix(loss=f"{total / max(examples, 1):.4f}", refresh=False)
    seconds = time.perf_counter() - started
    return {"loss": total / max(examples, 1), "examples": examples, "seconds": seconds}


@torch.no_grad()
def evaluate_epoch(step: nn.Module, loader: Any) -> dict[str, float]:
    """Mean loss over ``loader`` without gradients: ``{"loss", "examples"}``."""
    step.eval()
    device = _device_of(step)
    total, examples = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        n = len(batch)
        total += float(step(batch)) * n
        examples += n
    return {"loss": total / max(examples, 1), "examples": examples}


@dataclass
class FitResult:
    """What :func:`fit` did.

    Args:
        history: one dict per epoch (train and validation metrics).
        best_epoch: the epoch whose weights were kept.
        best_value: its monitored validation value.
        seconds: wall time.
        examples_per_s: training throughput.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_value: float = math.nan
    seconds: float = 0.0
    examples_per_s: float = 0.0


def fit(
    model: nn.Module,
    train_loader: Any,
    valid_loader: Any | None,
    config: TrainConfig,
    *,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    desc: str = "",
) -> FitResult:
    """Train ``model`` (with a ``loss`` method) with Adam and early stopping.

    The validation value is ``validate(model)[config.monitor]`` when
    ``validate`` is given, else the loss on ``valid_loader``. The best epoch's
    weights are restored at the end. Without validation data it trains all epochs.
    """
    seed_everything(config.seed)
    step = TrainStep(model)
    optimizer = make_optimizer(model, config)
    mode: Literal["min", "max"] = "min" if config.monitor == "loss" else "max"
    result = FitResult()
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs, started, seen, train_seconds = 0, time.perf_counter(), 0, 0.0
    for epoch in range(config.epochs):
        metrics = {"epoch": epoch, **{
            f"train_{k}": v for k, v in train_epoch(
                step, train_loader, optimizer, config, epoch=epoch, desc=desc).items()}}
        seen += int(metrics["train_examples"])
        train_seconds += metrics["train_seconds"]
        if validate is not None or valid_loader is not None:
            if validate is not None:
                model.eval()
                values = validate(model)
            else:
                values = evaluate_epoch(step, valid_loader)
            metrics.update({f"valid_{k}": v for k, v in values.items()})
            value = float(values[config.monitor])
            better = (
                value < result.best_value - config.min_delta if mode == "min"
                else value > result.best_value + config.min_delta
            ) or math.isnan(result.best_value)
            if better:
                result.best_value, result.best_epoch, bad_epochs = value, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad_epochs += 1
        result.history.append(metrics)
        log.info("%s epoch %d %s", desc, epoch,
                 {k: round(v, 5) for k, v in metrics.items() if isinstance(v, float)})
        if bad_epochs >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.history) - 1
    model.eval()
    result.seconds = time.perf_counter() - started
    result.examples_per_s = seen / max(train_seconds, 1e-9)
    return result


def fit_tables(model: nn.Module, train: Table, valid: Table | None, config: TrainConfig,
               *, validate: Callable[[nn.Module], dict[str, float]] | None = None,
               desc: str = "") -> FitResult:
    """:func:`fit` on tables (see :mod:`ccrec.data.tables`): builds the seeded loaders."""
    train_loader = make_loader(train, config.batch_size, shuffle=True, seed=config.seed,
                               num_workers=config.num_workers)
    valid_loader = (make_loader(valid, 1024, shuffle=False) if valid is not None else None)
    return fit(model, train_loader, valid_loader, config, validate=validate, desc=desc)


class Trainable:
    """A :class:`NeuralRecommender` with the settings it is trained with.

    The ``fit``/``score`` recommender (:class:`~ccrec.models.base.CategoryRecommender`)
    that the evaluation harness calls: ``fit`` seeds, lets the model
    :meth:`~ccrec.models.base.NeuralRecommender.prepare` on the training
    users, then trains it with :func:`fit_tables`, early-stopping on ``valid``.

    Args:
        model: the recommender to train.
        config: how it is trained (default :class:`TrainConfig`).
    """

    def __init__(self, model: NeuralRecommender, config: TrainConfig | None = None) -> None:
        self.model = model
        self.config = config or TrainConfig()

    @property
    def name(self) -> str:
        return self.model.name

    def fit(self, train: UserTable, valid: UserTable | None = None) -> FitResult:
        seed_everything(self.config.seed)
        self.model.prepare(train)
        return fit_tables(self.model, train, valid, self.config, desc=self.name)

    def score(self, batch: CategoryBatch) -> torch.Tensor:
        return self.model.score(batch)

    def eval(self) -> Trainable:
        self.model.eval()
        return self
