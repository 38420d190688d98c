"""The cascade on Ray: each stage a Ray Train ``TorchTrainer`` job, data through Ray Data.

The same driver runs on a laptop (a local Ray instance, ``num_workers=2``) and
on a cluster (``address="auto"``, N workers or an elastic ``(min, max)``
range, GPUs). Stages are defined once (:mod:`ccrec.train.stages`) and trained
by the same loop as the local driver (:func:`ccrec.train.loop.fit`):

1. **M1**: :func:`~ccrec.train.stage_runner.run_stage` over the training
   users of the prepared ``examples.parquet`` (Ray Data, split across the
   workers; nothing is collected in the driver);
2. **VAE**: the same, on the shard's past category interactions;
3. **candidates**: :func:`~ccrec.train.ingest.infer_candidates`, Ray Data
   batch inference of M1's r_t and y^{M1} and the VAE's μ for every training user;
4. **M2**: a stage job over those rows, early-stopped on validation HR@1.

M1 and the VAE can come from a :class:`~ccrec.train.stage_cache.StageCache`
(tuning trials that only change M2 train them once).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
import torch

from ccrec.data.prepared import resolve
from ccrec.models.cascade import CascadeConfig, CCRec
from ccrec.train.ingest import infer_candidates, split_dataset
from ccrec.train.loop import FitResult
from ccrec.train.stage_cache import StageCache
from ccrec.train.stage_runner import RayConfig, StageResult, run_stage
from ccrec.train.stages import STAGES, StageSpec

log = logging.getLogger(__name__)


@dataclass
class DistributedResult:
    """A cascade trained on Ray.

    Args:
        model: the :class:`CCRec` cascade (kept weights of every stage).
        config: its :class:`CascadeConfig`.
        stages: per stage, its :class:`StageResult`.
        seconds: wall time per stage and in total.
        run_dir: the run's directory (stage weights, candidates).
    """

    model: CCRec
    config: CascadeConfig
    stages: dict[str, StageResult]
    seconds: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None

    @property
    def fits(self) -> dict[str, FitResult]:
        """The training record of each stage, as the local driver's ``fits``."""
        return {name: result.fit for name, result in self.stages.items()}


def stage_specs(path: Path, config: CascadeConfig) -> dict[str, StageSpec]:
    """The three stages of ``config`` on the prepared data set at ``path``."""
    vocab = json.loads((path / "vocab.json").read_text())
    return {stage: StageSpec(stage, len(vocab["categories"]) - 1,
                             tuple(len(v) for v in vocab["user_features"].values()), config,
                             embedding_dim=config.encoder.latent_dim)
            for stage in STAGES}


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
        stage_cache: a :class:`StageCache` directory for M1 and the VAE.
    """
    if not ray.is_initialized():
        ray.init(address=ray_config.address)
    started = time.perf_counter()
    path = resolve(dataset)
    examples = path / "examples.parquet"
    specs = stage_specs(path, config)
    cache = StageCache(stage_cache) if stage_cache is not None else None
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
        key = StageCache.key(path, stage, config)
        cached = cache.load(key, stage) if cache is not None else None
        stages[stage] = cached or run_stage(specs[stage], train_users, ray_config,
                                            run_name=f"{name}-{stage}", examples=examples)
        torch.save(stages[stage].state_dict, run_dir / f"{stage}.pt")
        if cache is not None and cached is None:
            cache.store(key, stages[stage])
        seconds[stage] = time.perf_counter() - t

    t = time.perf_counter()
    inference = {"spec": specs["m2"], "sampler_path": str(run_dir / "m1.pt"),
                 "encoder_path": str(run_dir / "vae.pt"),
                 "device": "cuda" if ray_config.use_gpu else "cpu"}
    candidates = infer_candidates(
        train_users, inference, actors=ray_config.num_workers,
        cpus_per_actor=ray_config.cpus_per_worker, use_gpu=ray_config.use_gpu,
        out_dir=run_dir / "candidates" if write_candidates else None)
    seconds["candidates"] = time.perf_counter() - t
    t = time.perf_counter()
    stages["m2"] = run_stage(specs["m2"], candidates, ray_config, run_name=f"{name}-m2",
                             examples=examples, inference={**inference, "device": "cpu"},
                             callbacks=m2_callbacks)
    torch.save(stages["m2"].state_dict, run_dir / "m2.pt")
    seconds["m2"] = time.perf_counter() - t

    model = assemble(specs, stages, config)
    seconds["total"] = time.perf_counter() - started
    log.debug("cascade trained on Ray in %.1fs: %s", seconds["total"], seconds)
    return DistributedResult(model, config, stages, seconds, run_dir)


def assemble(specs: dict[str, StageSpec], stages: dict[str, StageResult],
             config: CascadeConfig) -> CCRec:
    """The :class:`CCRec` cascade from the stages' kept weights."""
    models = {}
    for stage in STAGES:
        models[stage] = specs[stage].build()
        models[stage].load_state_dict(stages[stage].state_dict)
    return CCRec(models["m1"], models["vae"], models["m2"], config.candidates).eval()  # type: ignore[arg-type]
