"""One cascade stage as a Ray Train ``TorchTrainer`` job.

:func:`run_stage` launches the job; every worker runs :func:`stage_loop`:
it reads its shard of the stage's Ray dataset (:mod:`ccrec.train.ingest`),
builds the stage's model and tables from the one stage table
(:mod:`ccrec.train.stages`) and runs the one training loop
(:func:`ccrec.train.loop.fit`) on a DDP-wrapped step (``prepare_model``).
After every epoch rank 0 reports a checkpoint (:mod:`ccrec.train.checkpoint`);
with ``FailureConfig(max_failures)`` a killed worker group is restarted and the
loop resumes from ``ray.train.get_checkpoint()`` at the next epoch.

Each worker keeps the *global* batch size: with W workers a worker's batch is
``batch_size // W``, so 1 and 2 workers take the same optimisation steps.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    DataConfig,
    FailureConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer, prepare_model

from ccrec.data.fetch import cache_dir
from ccrec.data.tables import make_loader
from ccrec.train.checkpoint import read_state, resume, save_checkpoint
from ccrec.train.ingest import CascadeInference, candidate_table, read_split, shard_frame
from ccrec.train.loop import FitResult, FitState, TrainStep, fit, make_optimizer
from ccrec.train.progress import epoch_lines
from ccrec.train.stages import StageSpec

#: Ray Train's control-loop interval, read by its controller (see :class:`RayConfig`), and
#: the value the environment gave it before any run here set it.
CONTROL_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
CONTROL_INTERVAL_GIVEN = os.environ.get(CONTROL_INTERVAL_ENV)


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide the Ray Train jobs run.

    Args:
        num_workers: training workers per stage (fixed size).
        min_workers, max_workers: both set = an elastic range: the worker
            group follows an autoscaling cluster between these sizes.
        resize_interval_s: elastic range only: how often a healthy worker
            group checks whether the cluster can hold more (or fewer) workers;
            a resize restarts the group from the last checkpoint.
        use_gpu: one GPU per worker (and per inference actor).
        cpus_per_worker: CPUs each worker reserves (1 on a laptop).
        address: Ray address (``auto`` for a cluster; None = local instance).
        storage_path: where runs and checkpoints go (shared storage on a
            cluster); default ``$CCREC_HOME/ray_results``.
        name: run name; stage runs are ``{name}-m1`` etc.
        max_failures: worker-group restarts per stage (``FailureConfig``).
        fail_after_epoch: fault injection: raise once after this epoch's
            checkpoint of ``fail_stage`` (a marker file makes it fire on the
            first attempt only); exercises recovery.
        fail_stage: the stage the fault injection targets.
        control_interval_s: how often Ray Train's controller checks the workers and
            takes their reports (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``; Ray's default is
            2 s). A worker's epoch report waits for the next check, so with the default
            a run of short epochs spent about as long waiting as training; a value set
            in the environment wins.
    """

    num_workers: int = 2
    min_workers: int | None = None
    max_workers: int | None = None
    resize_interval_s: float = 60.0
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    address: str | None = None
    storage_path: str | None = None
    name: str | None = None
    max_failures: int = 1
    fail_after_epoch: int | None = None
    fail_stage: str = "m1"
    control_interval_s: float = 0.25

    def scaling(self) -> ScalingConfig:
        workers: int | tuple[int, int] = self.num_workers
        if self.min_workers is not None or self.max_workers is not None:
            lo = self.min_workers if self.min_workers is not None else 1
            hi = self.max_workers if self.max_workers is not None else max(lo, self.num_workers)
            workers = (lo, hi)
        return ScalingConfig(
            num_workers=workers,
            use_gpu=self.use_gpu,
            resources_per_worker={"CPU": self.cpus_per_worker},
            elastic_resize_monitor_interval_s=self.resize_interval_s,
        )

    def storage(self) -> Path:
        return Path(self.storage_path) if self.storage_path else cache_dir() / "ray_results"


@dataclass
class StageResult:
    """A finished stage job.

    Args:
        stage: ``m1``, ``vae`` or ``m2``.
        fit: its training record (history rows carry ``start_epoch``: where an
            attempt began).
        state_dict: the kept weights.
        checkpoint_path: the last checkpoint's directory.
    """

    stage: str
    fit: FitResult
    state_dict: dict[str, torch.Tensor]
    checkpoint_path: str


class EqualBatches:
    """The first ``count`` batches of a loader per pass.

    Shards can hold different numbers of rows (the VAE's rows are the
    distinct past interactions of the shard's examples; a user whose examples
    fall in two shards has the ones they share in both), and DDP hangs when
    one rank takes more steps than another; every rank therefore stops after
    the smallest shard's batch count (the loader reshuffles each epoch, so no
    row is always left out).
    """

    def __init__(self, loader: torch.utils.data.DataLoader, count: int) -> None:
        self.loader, self.count = loader, count

    @property
    def generator(self) -> torch.Generator:
        return self.loader.generator

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.count)


def min_over_ranks(value: int, world: int) -> int:
    """The smallest ``value`` over the DDP group (``value`` itself alone)."""
    if world <= 1 or not torch.distributed.is_initialized():
        return value
    from ray.train.torch import get_device

    tensor = torch.tensor([value], device=get_device())
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MIN)
    return int(tensor.item())


def stage_loop(loop_config: dict[str, Any]) -> None:
    """The training function of every stage's workers (runs inside Ray Train)."""
    spec: StageSpec = loop_config["spec"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    config = replace(spec.train, progress=False)
    model = spec.build()
    frame = shard_frame("train")
    users = spec.users(frame)
    candidates = candidate_table(users, frame, spec.embedding_dim) if spec.stage == "m2" else None
    train = spec.table(users, candidates)
    validate = None
    if loop_config["examples"] is not None:  # every worker validates on all validation users
        valid = read_split(loop_config["examples"], "valid")
        if len(valid) and spec.stage == "m2":  # M2 validates on the users' candidates
            validate = spec.validator(CascadeInference(**loop_config["inference"]).table(valid))
        elif len(valid):
            validate = spec.validator(spec.table(spec.users(valid)))
    per_worker = replace(config, batch_size=max(1, config.batch_size // world))
    loader = make_loader(train, per_worker.batch_size, shuffle=True, seed=config.seed + rank)
    loader = EqualBatches(loader, min_over_ranks(len(loader), world))
    step = prepare_model(TrainStep(model))  # DDP when world > 1; the device is set here
    optimizer = make_optimizer(model, config)
    state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = resume(Path(d), model, optimizer)

    def report(state: FitState) -> None:
        row = state.history[-1]
        metrics = {**row, "stage": spec.stage, "best_epoch": state.stopping.best_epoch,
                   "best_value": state.stopping.best_value}
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:
                save_checkpoint(Path(tmp), model, optimizer, state)
                saved = Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=saved)
        _inject_failure(loop_config, spec.stage, row["epoch"], rank)

    fit(model, loader, per_worker, validate=validate, desc=spec.stage, step=step,
        optimizer=optimizer, state=state, rank=rank, world_size=world, on_epoch=report)


def _inject_failure(loop_config: dict[str, Any], stage: str, epoch: int, rank: int) -> None:
    """Fault injection: die once after ``fail_after_epoch``'s checkpoint (:class:`RayConfig`)."""
    marker = loop_config.get("fail_marker")
    if (marker and rank == 0 and stage == loop_config.get("fail_stage")
            and epoch == loop_config.get("fail_after_epoch") and not os.path.exists(marker)):
        Path(marker).write_text(f"failed after epoch {epoch}\n")
        raise RuntimeError(f"injected failure in {stage} after epoch {epoch}")


def run_stage(spec: StageSpec, train: ray.data.Dataset, ray_config: RayConfig, *,
              run_name: str, examples: Path | str | None = None,
              inference: dict[str, Any] | None = None,
              callbacks: list | None = None) -> StageResult:
    """Train one stage as a TorchTrainer job and return its kept weights.

    Args:
        spec: the stage.
        train: its training data, a Ray dataset (split across the workers).
        ray_config: workers, storage, failures.
        run_name: the Ray Train run name (a rerun with the same name resumes).
        examples: the prepared ``examples.parquet``; its validation users are
            read by every worker for early stopping (None: no validation).
        inference: M2 only: :class:`CascadeInference` arguments that turn
            validation users into candidate rows.
        callbacks: Ray Train callbacks (Tune's ``TuneReportCallback``).
    """
    loop_config: dict[str, Any] = {"spec": spec, "inference": inference,
                                   "examples": str(examples) if examples else None}
    storage = ray_config.storage()
    storage.mkdir(parents=True, exist_ok=True)
    if ray_config.fail_after_epoch is not None:
        loop_config.update(fail_stage=ray_config.fail_stage,
                           fail_after_epoch=ray_config.fail_after_epoch,
                           fail_marker=str(storage / f"{run_name}.failed"))
    # Ray Train passes this variable from the driver to its controller and workers.
    os.environ[CONTROL_INTERVAL_ENV] = CONTROL_INTERVAL_GIVEN or str(ray_config.control_interval_s)
    # Materialised before the workers take the CPUs: a lazy read would wait for a
    # CPU that the training workers hold (Ray Data's budget excludes them).
    train = train.materialize()
    # one console line per epoch while the job runs (ccrec.train.progress)
    with epoch_lines(storage / f"{run_name}.epochs.jsonl", spec.train.epochs) as epoch_log:
        trainer = TorchTrainer(
            stage_loop,
            train_loop_config=loop_config,
            scaling_config=ray_config.scaling(),
            run_config=RunConfig(
                name=run_name,
                storage_path=str(storage),
                failure_config=FailureConfig(max_failures=ray_config.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
                callbacks=[*(callbacks or []), epoch_log],
            ),
            datasets={"train": train},
            dataset_config=DataConfig(datasets_to_split=["train"]),
        )
        started = time.perf_counter()
        result = trainer.fit()
        seconds = time.perf_counter() - started
    if result.checkpoint is None:
        raise RuntimeError(f"stage {spec.stage} reported no checkpoint ({result.error})")
    with result.checkpoint.as_directory() as d:
        state = read_state(Path(d))
    if state.best_state is None:
        raise RuntimeError(f"stage {spec.stage} finished no epoch")
    return StageResult(spec.stage, FitResult.of(state, seconds), state.best_state,
                       result.checkpoint.path)
