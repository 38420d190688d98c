"""The one training loop: epochs, validation, early stopping, best weights.

* :func:`train_epoch` runs one pass over a loader (a shard under DDP) and
  returns metrics; :func:`evaluate_epoch` is its no-gradient twin.
* :class:`EarlyStopping` is the one early-stopping rule.
* :func:`fit` is the epoch loop every trainer runs: the local cascade
  (:mod:`ccrec.train.cascade`), the baselines (:class:`Trainable`) and each
  Ray Train worker (:mod:`ccrec.train.stage_runner`), which resumes it from a
  :class:`FitState` and checkpoints it after every epoch (``on_epoch``).
* :class:`Trainable` pairs a :class:`~ccrec.models.base.NeuralRecommender`
  with its :class:`~ccrec.models.base.TrainConfig`: the ``fit``/``score``
  recommender the evaluation harness calls.

A model plugs in through :class:`TrainStep`: ``TrainStep(model)(batch)`` is
``model.loss(batch)`` called through ``nn.Module.__call__``, so wrapping the
step in ``DistributedDataParallel`` synchronises gradients correctly.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ccrec.batch import CategoryBatch
from ccrec.console import terminal
from ccrec.data.tables import Table, UserTable, make_loader
from ccrec.models.base import NeuralRecommender, TrainConfig

log = logging.getLogger(__name__)

Validate = Callable[[nn.Module], dict[str, float]]


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


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch on one rank: a resumed run shuffles as an unbroken one."""
    return seed + 1000 * epoch + rank


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights (best weights survive later steps; checkpoints load
    on machines without a GPU)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def device_of(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters live (the CPU for a model without any)."""
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
    device = device_of(step)
    total, examples, started = 0.0, 0, time.perf_counter()
    bar = tqdm(loader, desc=f"{desc} {epoch}", leave=False, disable=not config.progress,
               file=terminal)
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
    device = device_of(step)
    total, examples = 0.0, 0
    for batch in loader:
        batch = batch.to(device)
        n = len(batch)
        total += float(step(batch)) * n
        examples += n
    return {"loss": total / max(examples, 1), "examples": examples}


def loss_validation(table: Table, batch_size: int = 1024) -> Validate:
    """A ``validate`` callback: the model's mean loss on ``table``."""
    loader = make_loader(table, batch_size, shuffle=False)
    return lambda model: evaluate_epoch(TrainStep(model), loader)


@dataclass
class EarlyStopping:
    """The early-stopping rule of every trainer.

    ``loss`` is minimised, any other monitored value (``HR@1``, …) maximised;
    an epoch improves when it beats the best by more than ``min_delta``; the
    run stops after ``patience`` epochs in a row without improvement.

    Args:
        monitor, min_delta, patience: as in :class:`TrainConfig`.
        best_value, best_epoch, bad_epochs: the record so far (a checkpoint
            stores them; ``best_value`` is NaN before the first validation).
    """

    monitor: str = "loss"
    min_delta: float = 1e-4
    patience: int = 3
    best_value: float = math.nan
    best_epoch: int = -1
    bad_epochs: int = 0

    @classmethod
    def of(cls, config: TrainConfig) -> EarlyStopping:
        return cls(config.monitor, config.min_delta, config.patience)

    def improves(self, value: float) -> bool:
        if math.isnan(self.best_value):
            return True
        if self.monitor == "loss":
            return value < self.best_value - self.min_delta
        return value > self.best_value + self.min_delta

    def update(self, epoch: int, value: float | None) -> bool:
        """Record ``epoch``'s validation value; True when its weights are the ones to keep.

        Without validation (``value`` None) every epoch is kept: training runs
        all epochs and ends with the last weights.
        """
        if value is None:
            self.best_epoch = epoch
            return True
        if self.improves(value):
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def stop(self) -> bool:
        return self.bad_epochs >= self.patience


@dataclass
class FitState:
    """Where a fit stands after its last finished epoch (a checkpoint's contents
    besides the model and optimiser).

    Args:
        stopping: the early-stopping record.
        history: one dict per finished epoch.
        best_state: the weights to keep (CPU), None before the first epoch.
        epoch: the last finished epoch (-1: none yet).
    """

    stopping: EarlyStopping
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    epoch: int = -1

    def record(self) -> dict[str, Any]:
        """The JSON-able part (everything but the weights)."""
        return {"stopping": asdict(self.stopping), "history": self.history, "epoch": self.epoch}

    @classmethod
    def from_record(cls, record: dict[str, Any],
                    best_state: dict[str, torch.Tensor] | None = None) -> FitState:
        return cls(EarlyStopping(**record["stopping"]), record["history"], best_state,
                   record["epoch"])


@dataclass
class FitResult:
    """What :func:`fit` did.

    Args:
        history: one dict per epoch (train and validation metrics).
        best_epoch: the epoch whose weights were kept.
        best_value: its monitored validation value (NaN without validation).
        seconds: wall time.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_value: float = math.nan
    seconds: float = 0.0

    @classmethod
    def of(cls, state: FitState, seconds: float) -> FitResult:
        return cls(state.history, state.stopping.best_epoch, state.stopping.best_value, seconds)

    @property
    def examples_per_s(self) -> float:
        """Training throughput over every epoch's training passes."""
        examples = sum(h["train_examples"] for h in self.history)
        seconds = sum(h["train_seconds"] for h in self.history)
        return examples / max(seconds, 1e-9)

    @property
    def epoch_seconds(self) -> float:
        """Mean time of one training pass."""
        rows = [h["train_seconds"] for h in self.history]
        return float(np.mean(rows)) if rows else math.nan

    def summary(self) -> dict[str, Any]:
        """The record a bundle's ``metrics.json`` keeps per stage."""
        return {"best_epoch": self.best_epoch, "best_value": self.best_value,
                "epochs": len(self.history), "examples_per_s": self.examples_per_s}


def fit(
    model: nn.Module,
    loader: Any,
    config: TrainConfig,
    *,
    validate: Validate | None = None,
    desc: str = "",
    step: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    state: FitState | None = None,
    rank: int = 0,
    world_size: int = 1,
    on_epoch: Callable[[FitState], None] | None = None,
) -> FitResult:
    """Train ``model`` (with a ``loss`` method) with Adam and :class:`EarlyStopping`.

    Each epoch reseeds the random generators and the loader's shuffling with
    :func:`epoch_seed` (so a run resumed from a :class:`FitState` trains as
    an unbroken one), trains one pass, calls ``validate(model)`` (its
    ``config.monitor`` value drives early stopping) and appends a history
    row. The kept weights are loaded at the end. Without ``validate`` it
    trains every epoch.

    Args:
        model: the module whose weights are kept.
        loader: training batches; its ``generator`` is reseeded every epoch.
        config: epochs, optimiser and early-stopping settings.
        step: the module to train through (default ``TrainStep(model)``; a
            DDP-wrapped one under Ray Train).
        optimizer: default Adam on ``model``'s parameters.
        state: a resumed :class:`FitState` (training goes on after its epoch).
        rank, world_size: this worker's place in a DDP group (shuffling seed,
            global example counts).
        on_epoch: called with the state after every epoch (checkpointing).
    """
    started = time.perf_counter()
    step = step if step is not None else TrainStep(model)
    optimizer = optimizer if optimizer is not None else make_optimizer(model, config)
    state = state if state is not None else FitState(EarlyStopping.of(config))
    start = state.epoch + 1
    if start == 0 and validate is not None and config.validate_initial:
        model.eval()
        values = validate(model)
        if state.stopping.update(-1, float(values[config.monitor])):
            state.best_state = cpu_state(model)
        log.info("%s before training %s", desc, {k: round(float(v), 5) for k, v in values.items()})
    for epoch in range(start, config.epochs):
        if state.stopping.stop:
            break
        seed = epoch_seed(config.seed, epoch, rank)
        seed_everything(seed)  # dropout etc.: a resumed epoch draws as an unbroken one
        loader.generator.manual_seed(seed)
        trained = train_epoch(step, loader, optimizer, config, epoch=epoch, desc=desc)
        examples = trained["examples"] * world_size
        row: dict[str, Any] = {
            "epoch": epoch, "start_epoch": start, "world_size": world_size,
            "train_loss": trained["loss"], "train_seconds": trained["seconds"],
            "train_examples": examples,
            "examples_per_s": examples / max(trained["seconds"], 1e-9),
        }
        value = None
        if validate is not None:
            model.eval()
            values = validate(model)
            row.update({f"valid_{k}": float(v) for k, v in values.items()})
            value = float(values[config.monitor])
        if state.stopping.update(epoch, value):
            state.best_state = cpu_state(model)
        state.epoch = epoch
        state.history.append(row)
        log.info("%s epoch %d %s", desc, epoch,
                 {k: round(v, 5) for k, v in row.items() if isinstance(v, float)})
        if on_epoch is not None:
            on_epoch(state)
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    model.eval()
    return FitResult.of(state, time.perf_counter() - started)


def fit_tables(model: nn.Module, train: Table, valid: Table | None, config: TrainConfig,
               *, validate: Validate | None = None, desc: str = "") -> FitResult:
    """:func:`fit` on tables (see :mod:`ccrec.data.tables`): builds the seeded loader.

    ``validate`` defaults to the loss on ``valid`` (when given).
    """
    loader = make_loader(train, config.batch_size, shuffle=True, seed=config.seed,
                         num_workers=config.num_workers)
    if validate is None and valid is not None:
        validate = loss_validation(valid)
    return fit(model, loader, config, validate=validate, desc=desc)


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
