"""Train → validate → bundle: the one path from a prepared data set to a model bundle.

``ccrec train`` (local or ``--ray``), every tuning trial and the demo call
:func:`train_and_bundle`; only the trainer differs: the local driver
(:func:`ccrec.train.cascade.train_cascade`) or the Ray driver
(:func:`ccrec.train.distributed.train_cascade_ray`). Both return the cascade,
each stage's :class:`~ccrec.train.loop.FitResult` and the wall times; the
cascade is then scored on the validation users and saved with that record.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ccrec.bundle import save_bundle
from ccrec.data.prepared import load_prepared, resolve
from ccrec.data.tables import UserTable
from ccrec.models.cascade import CascadeConfig
from ccrec.train.cascade import train_cascade
from ccrec.train.loop import FitResult

if TYPE_CHECKING:
    from ccrec.train.cascade import CascadeResult
    from ccrec.train.distributed import DistributedResult
    from ccrec.train.stage_runner import RayConfig

log = logging.getLogger(__name__)


@dataclass
class TrainedBundle:
    """A trained, validated and saved cascade.

    Args:
        path: the bundle directory.
        valid: the cascade's metrics on the validation users.
        fits: each stage's training record.
        seconds: wall time per stage and in total.
    """

    path: Path
    valid: dict[str, float]
    fits: dict[str, FitResult]
    seconds: dict[str, float]


def ensure_prepared(dataset: str, category_level: str | None = None) -> Path:
    """The prepared directory of ``dataset`` (a name, a directory, or prepared now)."""
    from ccrec.data.prepare import prepare, prepared_name

    name = dataset if resolve(dataset).is_dir() else prepared_name(dataset, category_level)
    if not (resolve(name) / "meta.json").exists():
        prepare(dataset, category_level=category_level)
    return resolve(name)


def train_and_bundle(path: Path, config: CascadeConfig, bundles_root: Path, *,
                     ray_config: RayConfig | None = None, m2_callbacks: list | None = None,
                     stage_cache: Path | None = None) -> TrainedBundle:
    """Train the cascade on the prepared data at ``path``, validate it, write its bundle.

    Args:
        path: a prepared data directory.
        config: the cascade's configuration.
        bundles_root: the bundle goes to a new version directory under it.
        ray_config: train each stage as a Ray Train job (None: in this process).
        m2_callbacks, stage_cache: Ray only, see
            :func:`~ccrec.train.distributed.train_cascade_ray`.
    """
    from ccrec.metrics import evaluate_recommender

    path = resolve(path)
    extra: dict[str, Any] = {}
    if ray_config is None:
        prepared = load_prepared(path)
        result: CascadeResult | DistributedResult = train_cascade(prepared, config)
        valid_users, vocab = result.tables["valid"], prepared.vocab
    else:
        from ccrec.train.distributed import train_cascade_ray
        from ccrec.train.ingest import read_split

        result = train_cascade_ray(path, config, ray_config, m2_callbacks=m2_callbacks,
                                   stage_cache=stage_cache)
        vocab = json.loads((path / "vocab.json").read_text())
        valid_users = UserTable(read_split(path / "examples.parquet", "valid"),
                                result.model.num_categories, config.max_past,
                                config.encoder.item_profile_dim)
        extra["ray"] = {"num_workers": ray_config.num_workers, "use_gpu": ray_config.use_gpu,
                        "run_dir": str(result.run_dir),
                        "checkpoints": {k: s.checkpoint_path for k, s in result.stages.items()}}
    valid = evaluate_recommender(result.model, valid_users)
    bundle = save_bundle(
        result.model, config, vocab, bundles_root, dataset=path.name,
        metrics={"valid": valid, "fits": {k: f.summary() for k, f in result.fits.items()},
                 "seconds": result.seconds, **extra})
    log.info("trained in %.1fs (%s); validation %s", result.seconds["total"],
             {k: round(v, 1) for k, v in result.seconds.items()},
             " ".join(f"{k}={valid[k]:.4f}" for k in ("HR@1", "HR@3", "HR@5")))
    return TrainedBundle(bundle, valid, result.fits, result.seconds)


def train_with_ray(path: Path, config: CascadeConfig, bundles_root: Path, *, num_workers: int = 2,
                   min_workers: int | None = None, max_workers: int | None = None,
                   address: str | None = None, gpu: bool = False, storage: str | None = None,
                   max_failures: int = 1) -> Path:
    """``ccrec train --ray``: connect (or start) Ray, train, validate, bundle; returns the
    bundle directory."""
    import ray

    from ccrec.train.stage_runner import RayConfig

    if gpu and address is None and not torch.cuda.is_available():
        raise RuntimeError("--gpu: this machine has no CUDA device for a local Ray instance "
                           "(give --address of a cluster with GPU nodes, or drop --gpu)")
    ray_config = RayConfig(num_workers=num_workers, min_workers=min_workers,
                           max_workers=max_workers, use_gpu=gpu, address=address,
                           storage_path=storage, max_failures=max_failures)
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    return train_and_bundle(path, config, bundles_root, ray_config=ray_config).path
