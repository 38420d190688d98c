"""The cascade on Ray: each stage a Ray Train ``TorchTrainer`` job, data through Ray Data.

The same driver runs on a laptop (a local Ray instance, ``num_workers=2``) and
on a cluster (``address="auto"``, N workers or an elastic ``(min, max)``
range, GPUs). It reuses the plain-PyTorch pieces of :mod:`ccrec.train.loop`
and :mod:`ccrec.train.cascade` unchanged:

1. **M1** — :func:`run_stage` launches a TorchTrainer whose workers read their
   shard of the training users from the prepared ``examples.parquet`` (Ray
   Data, ``streaming_split``; nothing is collected in the driver), build a
   :class:`~ccrec.data.tables.UserTable` and call
   :func:`~ccrec.train.loop.train_epoch` on a DDP-wrapped
   :class:`~ccrec.train.loop.TrainStep` (``prepare_model``).
2. **VAE** — the same, on the shard's past category interactions.
3. **Candidates** — :func:`infer_candidates` is Ray Data ``map_batches``
   batch inference: M1's r_t and y^{M1} and the VAE's μ for every train and
   validation user, written as parquet next to the run.
4. **M2** — a TorchTrainer over that parquet, early-stopped on validation HR@1.

Every epoch of every stage writes a checkpoint (weights, optimiser, best
weights, early-stopping state, history). With ``FailureConfig(max_failures)``
a killed worker group is restarted and :func:`_stage_loop` resumes from
``ray.train.get_checkpoint()`` at the next epoch.

Each worker keeps the *global* batch size: with W workers a worker's batch
is ``batch_size // W``, so 1 and 2 workers take the same optimisation steps.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
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
from torch import nn

from ccrec.data.fetch import cache_dir
from ccrec.data.prepared import resolve
from ccrec.data.tables import CandidateTable, UserTable, make_loader
from ccrec.metrics import ranking_metrics
from ccrec.models.base import TrainConfig
from ccrec.models.cascade import CascadeConfig, CCRec, candidates_from_m1
from ccrec.models.encoder import CategoryVAE
from ccrec.models.sampler import MLESampler
from ccrec.models.scorer import PrecisionScorer
from ccrec.train.cascade import scorer_validation
from ccrec.train.loop import (
    TrainStep,
    evaluate_epoch,
    make_optimizer,
    seed_everything,
    train_epoch,
)

log = logging.getLogger(__name__)

STAGES = ("m1", "vae", "m2")
#: The examples columns the stages read (the rest of the parquet stays on disk).
EXAMPLE_COLUMNS = ["user", "past_categories", "past_items", "user_features",
                   "future_categories", "split"]
CANDIDATE_COLUMNS = ["candidates", "candidate_m1", "ci_embeddings"]


@dataclass(frozen=True)
class RayConfig:
    """Where and how wide the Ray Train jobs run.

    Args:
        num_workers: training workers per stage (fixed size).
        min_workers, max_workers: both set = an elastic range: the worker
            group follows an autoscaling cluster between these sizes.
        use_gpu: one GPU per worker (and per inference actor).
        cpus_per_worker: CPUs each worker reserves (1 on a laptop).
        address: Ray address (``auto`` for a cluster; None = local instance).
        storage_path: where runs and checkpoints go (shared storage on a
            cluster); default ``$CCREC_HOME/ray_results``.
        name: run name; stage runs are ``{name}-m1`` etc.
        max_failures: worker-group restarts per stage (``FailureConfig``).
        fail_after_epoch: test hook, raise once after this epoch's checkpoint
            of ``fail_stage`` (a marker file makes it fire on the first attempt only).
        fail_stage: the stage the test hook targets.
    """

    num_workers: int = 2
    min_workers: int | None = None
    max_workers: int | None = None
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    address: str | None = None
    storage_path: str | None = None
    name: str | None = None
    max_failures: int = 1
    fail_after_epoch: int | None = None
    fail_stage: str = "m1"

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
        )

    def storage(self) -> Path:
        return Path(self.storage_path) if self.storage_path else cache_dir() / "ray_results"


@dataclass(frozen=True)
class StageSpec:
    """What one stage trains; shipped to every worker (plain, picklable data).

    Args:
        stage: ``m1``, ``vae`` or ``m2``.
        num_categories, feature_cardinalities: from the prepared vocabulary.
        cascade: the cascade configuration (model and training settings).
        embedding_dim: E of the VAE embeddings (M2 only).
    """

    stage: str
    num_categories: int
    feature_cardinalities: tuple[int, ...]
    cascade: CascadeConfig
    embedding_dim: int = 0

    @property
    def train(self) -> TrainConfig:
        c = self.cascade
        base = {"m1": c.train_sampler, "vae": c.train_encoder, "m2": c.train_scorer}[self.stage]
        offset = {"m1": 0, "vae": 1, "m2": 2}[self.stage]
        return replace(base, seed=base.seed + c.seed + offset, progress=False)

    def build(self) -> nn.Module:
        c = self.cascade
        torch.manual_seed(c.seed + {"m1": 0, "vae": 1, "m2": 2}[self.stage])
        if self.stage == "m1":
            return MLESampler(self.num_categories, c.max_past, c.sampler)
        if self.stage == "vae":
            return CategoryVAE(list(self.feature_cardinalities), self.num_categories, c.encoder)
        return PrecisionScorer(self.num_categories, self.embedding_dim, c.scorer)

    def users(self, frame: pd.DataFrame) -> UserTable:
        c = self.cascade
        return UserTable(frame, self.num_categories, c.max_past, c.encoder.item_profile_dim)

    def table(self, frame: pd.DataFrame):
        """The stage's training table for a frame of examples (+ candidate columns)."""
        users = self.users(frame)
        if self.stage == "m1":
            return users
        if self.stage == "vae":
            return users.interactions()
        return candidate_table(users, frame, self.embedding_dim)


def candidate_table(users: UserTable, frame: pd.DataFrame, embedding_dim: int) -> CandidateTable:
    """A :class:`CandidateTable` from the columns :func:`infer_candidates` wrote."""
    n, k = len(users), users.max_past
    cands = np.stack([np.asarray(v, np.int64) for v in frame["candidates"]]) if n else \
        np.zeros((0, 0), np.int64)
    probs = np.stack([np.asarray(v, np.float32) for v in frame["candidate_m1"]]) if n else \
        np.zeros((0, 0), np.float32)
    emb = np.stack([np.asarray(v, np.float32) for v in frame["ci_embeddings"]]) if n else \
        np.zeros((0, 0), np.float32)
    return CandidateTable(users, cands, probs, emb.reshape(n, k, embedding_dim))


def _shard_frame(name: str) -> pd.DataFrame | None:
    """This worker's shard of a Ray dataset as one frame (worker memory, not the driver's)."""
    shard = ray.train.get_dataset_shard(name)
    if shard is None:
        return None
    frames = list(shard.iter_batches(batch_format="pandas", batch_size=4096))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_split(examples: str | Path, split: str) -> pd.DataFrame:
    """One (small) split read straight from parquet, e.g. the validation users."""
    return pq.read_table(str(examples), columns=EXAMPLE_COLUMNS,
                         filters=[("split", "=", split)]).to_pandas()


def _valid_frame(loop_config: dict[str, Any]) -> pd.DataFrame | None:
    """Every worker validates on all validation users (identical early stopping)."""
    if not loop_config.get("examples"):
        return None
    frame = read_split(loop_config["examples"], "valid")
    if loop_config.get("inference") is not None:  # M2: candidates by the same UDF
        frame = _CascadeInference(**loop_config["inference"])(frame)
    return frame


def _validator(spec: StageSpec, valid: pd.DataFrame | None):
    if valid is None or len(valid) == 0:
        return None
    table = spec.table(valid)
    if spec.stage == "m2":
        return scorer_validation(table)
    loader = make_loader(table, 1024, shuffle=False)
    if spec.stage == "vae":
        return lambda m: evaluate_epoch(TrainStep(m), loader)

    @torch.no_grad()
    def validate_sampler(m: nn.Module) -> dict[str, float]:
        """M1's loss and its own HR@k / F1@k when its top categories are recommended."""
        values = evaluate_epoch(TrainStep(m), loader)
        ranked = [m.score(b)[:, 1:].topk(min(3, spec.num_categories), -1).indices.numpy() + 1
                  for b in loader]
        return {**values, **ranking_metrics(np.concatenate(ranked), table.future, (1, 3))}

    return validate_sampler


def _better(value: float, best: float, monitor: str, min_delta: float) -> bool:
    if math.isnan(best):
        return True
    return value < best - min_delta if monitor == "loss" else value > best + min_delta


class _EqualBatches:
    """The first ``count`` batches of a loader per pass.

    Shards can hold different numbers of rows (the VAE's rows are a user's
    past interactions), and DDP hangs when one rank takes more steps than
    another; every rank therefore stops after the smallest shard's batch count
    (the loader reshuffles each epoch, so no row is always left out).
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


def _min_over_ranks(value: int, world: int) -> int:
    if world <= 1 or not torch.distributed.is_initialized():
        return value
    from ray.train.torch import get_device

    tensor = torch.tensor([value], device=get_device())
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MIN)
    return int(tensor.item())


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights (checkpoints load on machines without a GPU)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _save(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
          best_state: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    torch.save(_cpu_state(model), directory / "model.pt")
    torch.save(best_state, directory / "best.pt")
    torch.save(optimizer.state_dict(), directory / "optimizer.pt")
    (directory / "state.json").write_text(json.dumps(state))


def _stage_loop(loop_config: dict[str, Any]) -> None:
    """The per-worker training function of every stage (runs inside Ray Train)."""
    spec: StageSpec = loop_config["spec"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    config = spec.train
    seed_everything(config.seed)
    model = spec.build()
    train = spec.table(_shard_frame("train"))
    validate = _validator(spec, _valid_frame(loop_config))
    per_worker = replace(config, batch_size=max(1, config.batch_size // world))
    loader = make_loader(train, per_worker.batch_size, shuffle=True, seed=config.seed + rank)
    step = prepare_model(TrainStep(model))  # DDP when world > 1; the device is set here
    loader = _EqualBatches(loader, _min_over_ranks(len(loader), world))
    optimizer = make_optimizer(model, config)

    state: dict[str, Any] = {"epoch": -1, "best_value": math.nan, "best_epoch": -1,
                             "bad_epochs": 0, "history": []}
    best_state = _cpu_state(model)
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            d = Path(d)
            model.load_state_dict(torch.load(d / "model.pt", weights_only=True))
            optimizer.load_state_dict(torch.load(d / "optimizer.pt", weights_only=True,
                                                 map_location="cpu"))
            best_state = torch.load(d / "best.pt", weights_only=True)
            state = json.loads((d / "state.json").read_text())
    start = state["epoch"] + 1

    for epoch in range(start, config.epochs):
        if state["bad_epochs"] >= config.patience:
            break
        loader.generator.manual_seed(config.seed + 1000 * epoch + rank)  # resumable shuffle
        fitted = train_epoch(step, loader, optimizer, per_worker, epoch=epoch, desc=spec.stage)
        metrics: dict[str, Any] = {
            "stage": spec.stage, "epoch": epoch, "start_epoch": start, "world_size": world,
            "train_loss": fitted["loss"], "train_seconds": fitted["seconds"],
            "train_examples": fitted["examples"] * world,
            "examples_per_s": fitted["examples"] * world / max(fitted["seconds"], 1e-9),
        }
        if validate is not None:
            model.eval()
            values = validate(model)
            metrics.update({f"valid_{k}": float(v) for k, v in values.items()})
            value = float(values[config.monitor])
            if _better(value, state["best_value"], config.monitor, config.min_delta):
                state.update(best_value=value, best_epoch=epoch, bad_epochs=0)
                best_state = _cpu_state(model)
            else:
                state["bad_epochs"] += 1
        else:
            state.update(best_epoch=epoch)
            best_state = _cpu_state(model)
        state["epoch"] = epoch
        state["history"].append(metrics)
        metrics.update(best_epoch=state["best_epoch"], best_value=state["best_value"])
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:
                _save(Path(tmp), model, optimizer, best_state, state)
                saved = Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=saved)
        _maybe_fail(loop_config, spec.stage, epoch, rank)


def _maybe_fail(loop_config: dict[str, Any], stage: str, epoch: int, rank: int) -> None:
    """Test hook: die once after ``fail_after_epoch``'s checkpoint (see :class:`RayConfig`)."""
    marker = loop_config.get("fail_marker")
    if (marker and rank == 0 and stage == loop_config.get("fail_stage")
            and epoch == loop_config.get("fail_after_epoch") and not os.path.exists(marker)):
        Path(marker).write_text(f"failed after epoch {epoch}\n")
        raise RuntimeError(f"injected failure in {stage} after epoch {epoch}")


@dataclass
class StageResult:
    """A finished stage: its best weights, history and throughput.

    Args:
        stage: ``m1``, ``vae`` or ``m2``.
        state_dict: the best epoch's weights.
        history: one dict per epoch as reported (``start_epoch`` tells the attempt).
        best_epoch, best_value: the early-stopping record.
        checkpoint_path: the last checkpoint's directory.
        seconds: wall time of the job (start-up included).
    """

    stage: str
    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    best_epoch: int
    best_value: float
    checkpoint_path: str
    seconds: float = 0.0

    @property
    def examples_per_s(self) -> float:
        rows = [h for h in self.history if "examples_per_s" in h]
        examples = sum(h["train_examples"] for h in rows)
        seconds = sum(h["train_seconds"] for h in rows)
        return examples / max(seconds, 1e-9)

    @property
    def epoch_seconds(self) -> float:
        rows = [h["train_seconds"] for h in self.history]
        return float(np.mean(rows)) if rows else math.nan


def run_stage(spec: StageSpec, train: Any, ray_config: RayConfig, *, run_name: str,
              examples: Path | str | None = None, inference: dict[str, Any] | None = None,
              callbacks: list | None = None) -> StageResult:
    """Train one stage as a TorchTrainer job and return its best weights.

    Args:
        spec: the stage.
        train: its training data, a Ray dataset (split across the workers).
        ray_config: workers, storage, failures.
        run_name: the Ray Train run name (a rerun with the same name resumes).
        examples: the prepared ``examples.parquet``; its validation users are
            read by every worker for early stopping (None: no validation).
        inference: :class:`_CascadeInference` arguments that turn validation
            users into M2's candidate rows.
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
    # Materialised before the workers take the CPUs: a lazy read would wait for a
    # CPU that the training workers hold (Ray Data's budget excludes them).
    train = train.materialize()
    trainer = TorchTrainer(
        _stage_loop,
        train_loop_config=loop_config,
        scaling_config=ray_config.scaling(),
        run_config=RunConfig(
            name=run_name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=ray_config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
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
        d = Path(d)
        state = json.loads((d / "state.json").read_text())
        weights = torch.load(d / "best.pt", weights_only=True, map_location="cpu")
    return StageResult(spec.stage, weights, state["history"], state["best_epoch"],
                       state["best_value"], result.checkpoint.path, seconds)


def split_dataset(examples: Path | str, split: str = "train"):
    """One split of the prepared examples as a Ray dataset (read by Ray Data tasks).

    Ray Data pushes the column selection and the split filter down into the
    parquet read; the rows go to the object store, never through the driver.
    """
    ds = ray.data.read_parquet(str(examples)).select_columns(EXAMPLE_COLUMNS)
    return ds.filter(expr=f"split == '{split}'")


class _CascadeInference:
    """Ray Data UDF: M1's candidates r_t, y^{M1} and the VAE's μ for a batch of users.

    Args:
        spec: the M2 stage spec (model shapes and the candidate rule).
        sampler_path, encoder_path: the best M1 / VAE weights (state dicts).
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, spec: StageSpec, sampler_path: str, encoder_path: str,
                 device: str = "cpu") -> None:
        c = spec.cascade
        self.spec, self.device = spec, torch.device(device)
        self.sampler = MLESampler(spec.num_categories, c.max_past, c.sampler)
        self.sampler.load_state_dict(torch.load(sampler_path, weights_only=True))
        self.encoder = CategoryVAE(list(spec.feature_cardinalities), spec.num_categories,
                                   c.encoder)
        self.encoder.load_state_dict(torch.load(encoder_path, weights_only=True))
        self.sampler.to(self.device).eval()
        self.encoder.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        users = self.spec.users(frame)
        b = users.batch(np.arange(len(users))).to(self.device)  # CategoryBatch [B, …]
        cands, probs = candidates_from_m1(self.sampler(b.past_categories), b.past_categories,
                                          self.spec.cascade.candidates)  # [B, R] each
        emb = self.encoder.embed(b.user_features, b.past_profiles, b.past_categories)  # [B,k,E]
        out = frame.copy()
        out["candidates"] = list(cands.cpu().numpy())
        out["candidate_m1"] = list(probs.cpu().numpy())
        out["ci_embeddings"] = list(emb.reshape(len(users), -1).cpu().numpy())
        return out


def infer_candidates(users: Any, inference: dict[str, Any], ray_config: RayConfig,
                     *, batch_size: int = 1024, out_dir: Path | None = None):
    """Stage-1 (and VAE) batch inference with Ray Data ``map_batches``.

    Args:
        users: a Ray dataset of examples (the training users).
        inference: :class:`_CascadeInference` arguments.
        ray_config: actor count (``num_workers``), CPUs and GPUs per actor.
        out_dir: also write the candidates as parquet there.
    Returns:
        The materialised dataset with ``candidates``, ``candidate_m1`` and
        ``ci_embeddings`` columns added, M2's training data.
    """
    ds = users.map_batches(
        _CascadeInference,
        fn_constructor_kwargs=inference,
        batch_format="pandas",
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, ray_config.num_workers)),
        num_cpus=ray_config.cpus_per_worker,
        num_gpus=1 if ray_config.use_gpu else 0,
    ).materialize()
    if out_dir is not None:
        ds.write_parquet(str(out_dir))
    return ds


@dataclass
class DistributedResult:
    """A cascade trained on Ray.

    Args:
        model: the :class:`CCRec` cascade (best weights of every stage).
        config: its :class:`CascadeConfig`.
        stages: per stage, its :class:`StageResult`.
        seconds: wall time per stage and in total.
        run_dir: the run's directory (checkpoints, stage weights).
    """

    model: CCRec
    config: CascadeConfig
    stages: dict[str, StageResult]
    seconds: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None

    @property
    def valid_metrics(self) -> dict[str, float]:
        """M2's validation metrics at its best epoch."""
        m2 = self.stages["m2"]
        row = next((h for h in m2.history if h["epoch"] == m2.best_epoch), m2.history[-1])
        return {k.removeprefix("valid_"): v for k, v in row.items() if k.startswith("valid_")}


def train_cascade_ray(dataset: str | Path, config: CascadeConfig, ray_config: RayConfig,
                      *, m2_callbacks: list | None = None, write_candidates: bool = False,
                      stage_cache: Path | None = None) -> DistributedResult:
    """Train M1, the VAE and M2 as three Ray Train jobs (see the module docstring).

    Args:
        dataset: a prepared data-set name or directory.
        config: the cascade's configuration.
        ray_config: workers, GPUs, storage, failure handling.
        m2_callbacks: Ray Train callbacks of the scorer job (Tune's
            ``TuneReportCallback`` when run inside a trial).
        write_candidates: also keep M2's training rows as parquet in the run directory.
        stage_cache: a directory where M1 and VAE results are kept by a digest of
            their configuration; a later call with the same settings (another
            tuning trial that only changes M2) reuses them instead of training.
    """
    if not ray.is_initialized():
        ray.init(address=ray_config.address)
    started = time.perf_counter()
    path = resolve(dataset)
    examples = path / "examples.parquet"
    vocab = json.loads((path / "vocab.json").read_text())
    common: dict[str, Any] = {
        "num_categories": len(vocab["categories"]) - 1,
        "feature_cardinalities": tuple(len(v) for v in vocab["user_features"].values()),
        "cascade": config,
    }
    name = ray_config.name or f"ccrec-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir = ray_config.storage() / name
    run_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    train_users = split_dataset(examples, "train").materialize()  # object store, not the driver
    seconds["read"] = time.perf_counter() - t
    stages: dict[str, StageResult] = {}
    for stage in ("m1", "vae"):
        t = time.perf_counter()
        key = _stage_key(path, stage, config)
        cached = _cache_load(stage_cache, key, stage) if stage_cache else None
        stages[stage] = cached or run_stage(StageSpec(stage, **common), train_users, ray_config,
                                            run_name=f"{name}-{stage}", examples=examples)
        torch.save(stages[stage].state_dict, run_dir / f"{stage}.pt")
        if stage_cache and cached is None:
            _cache_store(stage_cache, key, stages[stage])
        seconds[stage] = time.perf_counter() - t

    t = time.perf_counter()
    spec_m2 = StageSpec("m2", embedding_dim=config.encoder.latent_dim, **common)
    inference = {"spec": spec_m2, "sampler_path": str(run_dir / "m1.pt"),
                 "encoder_path": str(run_dir / "vae.pt"),
                 "device": "cuda" if ray_config.use_gpu else "cpu"}
    candidates = infer_candidates(train_users, inference, ray_config,
                                  out_dir=run_dir / "candidates" if write_candidates else None)
    seconds["candidates"] = time.perf_counter() - t
    t = time.perf_counter()
    stages["m2"] = run_stage(spec_m2, candidates, ray_config, run_name=f"{name}-m2",
                             examples=examples, inference={**inference, "device": "cpu"},
                             callbacks=m2_callbacks)
    torch.save(stages["m2"].state_dict, run_dir / "m2.pt")
    seconds["m2"] = time.perf_counter() - t

    model = assemble(stages, common, config)
    seconds["total"] = time.perf_counter() - started
    log.info("cascade trained on Ray in %.1fs: %s", seconds["total"], seconds)
    return DistributedResult(model, config, stages, seconds, run_dir)


def _stage_key(path: Path, stage: str, config: CascadeConfig) -> str:
    from ccrec.config import to_dict

    c = to_dict(config)
    parts = {"m1": ("sampler", "train_sampler"), "vae": ("encoder", "train_encoder")}[stage]
    payload = {"data": str(path), "stage": stage, "max_past": c["max_past"], "seed": c["seed"],
               **{p: c[p] for p in parts}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _cache_load(cache: Path, key: str, stage: str) -> StageResult | None:
    meta = cache / f"{stage}-{key}.json"
    if not meta.exists():
        return None
    record = json.loads(meta.read_text())
    weights = torch.load(cache / f"{stage}-{key}.pt", weights_only=True)
    log.info("stage %s: reusing cached result %s", stage, key)
    return StageResult(stage, weights, record["history"], record["best_epoch"],
                       record["best_value"], record["checkpoint_path"])


def _cache_store(cache: Path, key: str, result: StageResult) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{result.stage}-{key}.{os.getpid()}"
    torch.save(result.state_dict, f"{tmp}.pt")
    Path(f"{tmp}.json").write_text(json.dumps(
        {"history": result.history, "best_epoch": result.best_epoch,
         "best_value": result.best_value, "checkpoint_path": result.checkpoint_path}))
    os.replace(f"{tmp}.pt", cache / f"{result.stage}-{key}.pt")  # weights first, then meta
    os.replace(f"{tmp}.json", cache / f"{result.stage}-{key}.json")


def assemble(stages: dict[str, StageResult], common: dict[str, Any],
             config: CascadeConfig) -> CCRec:
    """The :class:`CCRec` cascade from the stages' best weights."""
    models = {}
    for stage in STAGES:
        spec = StageSpec(stage, embedding_dim=config.encoder.latent_dim, **common)
        models[stage] = spec.build()
        models[stage].load_state_dict(stages[stage].state_dict)
    return CCRec(models["m1"], models["vae"], models["m2"], config.candidates).eval()  # type: ignore[arg-type]


def ensure_prepared(dataset: str, category_level: str | None = None) -> Path:
    """The prepared directory of ``dataset`` (a name, a directory, or prepared now)."""
    from ccrec.data.prepare import prepare, prepared_name

    name = dataset if resolve(dataset).is_dir() else prepared_name(dataset, category_level)
    if not (resolve(name) / "meta.json").exists():
        prepare(dataset, category_level=category_level)
    return resolve(name)


def train_and_bundle(path: Path, config: CascadeConfig, ray_config: RayConfig,
                     bundles_root: Path, *, m2_callbacks: list | None = None,
                     stage_cache: Path | None = None,
                     ) -> tuple[Path, DistributedResult, dict[str, float]]:
    """Train on Ray, evaluate on the validation users and write the model bundle.

    Returns the bundle directory, the training result and the validation metrics.
    """
    from ccrec.bundle import save_bundle
    from ccrec.evaluate import evaluate_recommender

    result = train_cascade_ray(path, config, ray_config, m2_callbacks=m2_callbacks,
                               stage_cache=stage_cache)
    vocab = json.loads((path / "vocab.json").read_text())
    valid_users = UserTable(read_split(path / "examples.parquet", "valid"),
                            len(vocab["categories"]) - 1, config.max_past,
                            config.encoder.item_profile_dim)
    valid = evaluate_recommender(result.model, valid_users)
    stages = {k: {"best_epoch": s.best_epoch, "epochs": len(s.history),
                  "examples_per_s": s.examples_per_s, "checkpoint": s.checkpoint_path}
              for k, s in result.stages.items()}
    bundle = save_bundle(
        result.model, config, vocab, bundles_root, dataset=path.name,
        metrics={"valid": valid, "fits": stages, "seconds": result.seconds,
                 "ray": {"num_workers": ray_config.num_workers, "use_gpu": ray_config.use_gpu,
                         "run_dir": str(result.run_dir)}},
    )
    return bundle, result, valid


def train_with_ray(path: Path, config: CascadeConfig, bundles_root: Path, *, num_workers: int = 2,
                   min_workers: int | None = None, max_workers: int | None = None,
                   address: str | None = None, gpu: bool = False, storage: str | None = None,
                   max_failures: int = 1) -> Path:
    """``ccrec train --ray``: connect (or start) Ray, train, bundle; returns the bundle."""
    ray_config = RayConfig(num_workers=num_workers, min_workers=min_workers,
                           max_workers=max_workers, use_gpu=gpu, address=address,
                           storage_path=storage, max_failures=max_failures)
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    bundle, result, valid = train_and_bundle(path, config, ray_config, bundles_root)
    log.info("trained on Ray in %.1fs (%s); validation %s", result.seconds["total"],
             {k: round(v, 1) for k, v in result.seconds.items()},
             " ".join(f"{k}={valid[k]:.4f}" for k in ("HR@1", "HR@3", "HR@5")))
    return bundle
