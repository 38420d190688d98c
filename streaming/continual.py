"""Continuous training: the served model goes on learning from the click stream.

One cycle (:func:`retrain_cycle`, ``ccrec retrain``):

1. **data**: the examples of the task, rebuilt from the Feast offline log the
   stream worker writes (:mod:`streaming.offline`), in the served bundle's
   vocabulary, with a global cutoff at the start of the *newest window* (the
   latest event time minus ``window_days``): training users are examples at
   their boundaries up to the cutoff; two other seeded groups of users are
   examples at the cutoff whose futures lie in the window: validation users
   (early stopping) and gate users (held out from fine-tuning and early stopping
   alike, so the gate compares the two models on users neither chose anything on);
2. **fine-tuning**: every stage starts from the served bundle's weights
   (``CascadeConfig.warm_start``) and trains on the examples since the served
   model's cutoff plus a seeded replay sample of the older ones (against
   forgetting), on Ray Train or in this process, as ``ccrec train``;
3. **gate**: candidate and served model score the window's gate users
   (:func:`ccrec.train.gate.gate`); the candidate is published only if its
   HR@1 is not lower by more than ``margin``;
4. **publish**: the registry re-points ``current`` (:mod:`ccrec.registry`);
   both serving stages follow the link and each answer is one version's
   (:class:`serve.runtime.ModelSlots`).

Without a served model the first cycle trains from scratch and publishes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
import pandas as pd

from ccrec.registry import Registry
from features.cli import feast_options
from streaming.offline import log_events, prepare_from_feast, read_vocab

if TYPE_CHECKING:
    from feast import FeatureStore

    from ccrec.train.stage_runner import RayConfig

log = logging.getLogger(__name__)
DAY = 86_400
#: The splits of the gate's users: the held-out users of the window (warm, and those with
#: at most ``cold_max_cis`` CIs before it).
GATE = ("warm_test", "cold_test")


@dataclass(frozen=True)
class RetrainConfig:
    """How one retraining cycle chooses its data, trains and decides.

    Args:
        window_days: the newest window (held out for the gate) spans this many days
            before the latest event.
        replay_fraction: the share of the older training examples trained on again.
        epochs: the most fine-tuning epochs of each stage (early stopping on the
            window's validation users still applies).
        lr: the fine-tuning learning rate of each stage.
        margin: publish unless HR@1 on the window's gate users drops by more.
        gate_fraction: the seeded share of users held out for the gate.
        valid_fraction: the seeded share of the other users that validate (early
            stopping) instead of training.
        seed: seeds the replay sample and the gate's bootstrap.
        config: the YAML of a first model's cascade (default: the data set's).
        overrides: ``key=value`` settings of the cascade (``ccrec train --set``).
    """

    window_days: float = 7.0
    replay_fraction: float = 0.2
    epochs: int = 3
    lr: float = 5e-4
    margin: float = 0.0
    gate_fraction: float = 0.2
    valid_fraction: float = 0.1
    seed: int = 0
    config: str | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.window_days <= 0:
            raise ValueError("window_days must be positive")
        if not 0 <= self.replay_fraction <= 1:
            raise ValueError("replay_fraction must be between 0 and 1")
        if self.margin < 0:
            raise ValueError("margin must be at least 0")
        if not (0 < self.gate_fraction < 1 and 0 < self.valid_fraction < 1):
            raise ValueError("gate_fraction and valid_fraction must be between 0 and 1")


@dataclass
class CycleResult:
    """What one cycle did.

    Args:
        version: the candidate bundle's version (None: no cycle, nothing new).
        published: whether it now serves.
        served: the version serving after the cycle.
        gate: the gate's evidence (None for a first model).
        examples: new and replayed training examples, validation and gate users.
        cutoff: the window's start (epoch s): the candidate trained on origins before it.
        seconds: wall time of each step and in total.
    """

    version: str | None
    published: bool
    served: str | None
    gate: dict[str, Any] | None
    examples: dict[str, int]
    cutoff: int
    seconds: dict[str, float]


def _cascade(dataset: str, served: Path | None, config: RetrainConfig):
    """The served bundle's configuration, warm-started from it, with fine-tuning epochs;
    without a served bundle, the data set's default configuration."""
    from ccrec.config import apply_overrides, build, load, to_dict
    from ccrec.models.cascade import CascadeConfig

    if served is None:
        default = Path(__file__).parents[1] / "ccrec" / "configs" / f"{dataset}.yaml"
        first = config.config or (str(default) if default.exists() else None)
        return load(CascadeConfig, first, list(config.overrides))
    values = json.loads((served / "config.json").read_text())
    for stage in ("train_sampler", "train_encoder", "train_scorer"):
        values[stage] = {**values[stage], "epochs": config.epochs, "lr": config.lr}
    values["warm_start"] = str(served.resolve())
    return build(CascadeConfig, apply_overrides(to_dict(build(CascadeConfig, values)),
                                                list(config.overrides)))


def _select(path: Path, since: int | None, fraction: float, seed: int) -> dict[str, int]:
    """Keep the training examples with an origin after ``since`` and a seeded ``fraction``
    of the older ones (all of them for a first model); rewrites ``examples.parquet``."""
    examples = pd.read_parquet(path / "examples.parquet")
    split = examples["split"].to_numpy()
    train = split == "train"
    held_out = {"valid": int((split == "valid").sum()), "gate": int(np.isin(split, GATE).sum())}
    if since is None:
        return {"new": int(train.sum()), "replayed": 0, **held_out}
    new = train & (examples["origin"].to_numpy() > since)
    old = np.flatnonzero(train & ~new)
    rng = np.random.default_rng(seed)
    replay = rng.choice(old, size=int(round(fraction * len(old))), replace=False)
    keep = ~train | new
    keep[replay] = True
    examples[keep].reset_index(drop=True).to_parquet(path / "examples.parquet", index=False)
    return {"new": int(new.sum()), "replayed": len(replay), **held_out}


def retrain_cycle(store: FeatureStore, bundles_root: Path, config: RetrainConfig, *,
                  prepared: Path | None = None, work_dir: Path | None = None,
                  ray_config: RayConfig | None = None) -> CycleResult:
    """One cycle (see the module docstring).

    Args:
        store: the feature store the stream worker writes.
        bundles_root: the bundles root; its registry says what serves.
        config: data, fine-tuning and gate settings.
        prepared: the vocabulary's source while no model serves (a prepared data set).
        work_dir: where the cycle's examples go (default ``<bundles_root>/.cycles``).
        ray_config: train each stage as a Ray Train job (None: in this process).
    """
    from ccrec.bundle import Bundle
    from ccrec.data.prepare import DATASET_DEFAULTS, PrepareConfig, default_config, prepared_name
    from ccrec.data.prepared import load_prepared
    from ccrec.data.tables import UserTable
    from ccrec.train.gate import gate
    from ccrec.train.run import train_and_bundle

    started = time.perf_counter()
    seconds: dict[str, float] = {}
    registry = Registry(Path(bundles_root))
    served = registry.path(registry.current) if registry.current else None
    if served is None and prepared is None:
        raise ValueError(f"{bundles_root} serves no model: give the prepared data set "
                         "whose vocabulary the stream worker uses")
    vocab, dataset = read_vocab(served or Path(prepared))  # type: ignore[arg-type]
    entry = next((e for e in reversed(registry.history())
                  if e["action"] == "publish" and e["version"] == registry.current), {})
    dataset = entry.get("dataset", dataset)  # a bundle names its prepared directory
    latest = int(log_events(store)["timestamp"].max())
    cutoff = latest - int(config.window_days * DAY)
    task = default_config(dataset) if dataset in DATASET_DEFAULTS else PrepareConfig()
    # the gate's users are the task's test users (warm, and the held-out newcomers)
    task = replace(task, cutoff_mode="global", test_fraction=config.gate_fraction,
                   valid_fraction=config.valid_fraction, cold_share=0.0,
                   cutoff=pd.Timestamp(cutoff, unit="s").strftime("%Y-%m-%dT%H:%M:%S"))
    work = Path(work_dir or Path(bundles_root) / ".cycles") / (
        time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}")
    path = prepare_from_feast(store, vocab, task, work / prepared_name(dataset, None), dataset)
    since = entry.get("cutoff")
    examples = _select(path, since, config.replay_fraction, config.seed)
    seconds["data"] = time.perf_counter() - started
    needed = {"new": "training example after the served model's cutoff",
              "valid": "validation user in the newest window",
              "gate": "gate user in the newest window"}
    missing = [what for key, what in needed.items() if examples[key] == 0]
    if missing:
        log.info("no %s; nothing to retrain", " and no ".join(missing))
        return CycleResult(None, False, registry.current, None, examples, cutoff, seconds)

    t = time.perf_counter()
    cascade = _cascade(dataset, served, config)
    trained = train_and_bundle(path, cascade, Path(bundles_root), ray_config=ray_config)
    seconds["train"] = time.perf_counter() - t
    t = time.perf_counter()
    verdict = None
    if served is not None:
        data = load_prepared(path)
        gate_users = pd.concat([data.split(name) for name in GATE], ignore_index=True)
        held_out = UserTable(gate_users, data.num_categories, cascade.max_past,
                             cascade.encoder.item_profile_dim)
        verdict = gate(Bundle.load(served).model, Bundle.load(trained.path).model, held_out,
                       config.margin, seed=config.seed).summary()
    seconds["gate"] = time.perf_counter() - t
    version = trained.path.name
    published = verdict is None or verdict["publish"]
    details = {"dataset": dataset, "cutoff": cutoff, "data_until": latest, "examples": examples,
               "gate": verdict}
    if published:
        registry.publish(version, **details)
    else:
        registry.record("reject", version, **details)
    seconds["total"] = time.perf_counter() - started
    log.info("cycle: %s %s (%s)", version, "published" if published else "rejected", verdict)
    return CycleResult(version, published, registry.current, verdict, examples, cutoff, seconds)


def parse_every(text: str) -> float:
    """``30s``, ``10m``, ``2h`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = float(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 10m or 2h",
                                 param_hint="--every") from None
    if value <= 0:
        raise click.BadParameter("the interval must be positive", param_hint="--every")
    return value


def _report(result: CycleResult) -> str:
    if result.version is None:
        return (f"no cycle: {result.examples['new']} new training examples, "
                f"{result.examples['valid']} validation and {result.examples['gate']} gate "
                f"users; serving {result.served}")
    verdict = result.gate
    evidence = "" if verdict is None else (
        f" ({verdict['metric']} {verdict['candidate']:.4f} vs {verdict['current']:.4f}, "
        f"diff {verdict['diff']:+.4f} [{verdict['diff_ci'][0]:+.4f}, "
        f"{verdict['diff_ci'][1]:+.4f}], n = {verdict['n']} gate users)")
    action = "published" if result.published else "rejected"
    return (f"{result.version} {action}{evidence}; {result.examples['new']} new + "
            f"{result.examples['replayed']} replayed examples; "
            f"{result.seconds['total']:.0f}s; serving {result.served}")


@click.command()
@feast_options
@click.option("--bundles", "bundles_root", required=True, type=click.Path(path_type=Path),
              help="The bundles root whose `current` serving follows.")
@click.option("--dataset", default=None,
              help="The prepared data set whose vocabulary the stream uses (first cycle only).")
@click.option("--every", default=None, help="Run a cycle every interval (e.g. 10m); "
                                            "default: one cycle.")
@click.option("--window-days", type=float, default=RetrainConfig.window_days, show_default=True,
              help="The newest window, held out for the gate.")
@click.option("--replay-fraction", type=float, default=RetrainConfig.replay_fraction,
              show_default=True, help="Share of older training examples trained on again.")
@click.option("--epochs", type=int, default=RetrainConfig.epochs, show_default=True,
              help="Most fine-tuning epochs per stage.")
@click.option("--margin", type=float, default=RetrainConfig.margin, show_default=True,
              help="Publish unless HR@1 on the gate's users drops by more than this.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a cascade setting, e.g. --set train_scorer.lr=0.0001")
@click.option("--ray/--local", "use_ray", default=True, show_default=True,
              help="Each stage as a Ray Train job, or in this process.")
@click.option("--num-workers", default=2, show_default=True, type=int,
              help="Ray Train workers per stage.")
@click.option("--address", default=None, help="Ray cluster address, e.g. auto.")
@click.option("--threads", default=1, show_default=True, type=int, help="torch CPU threads.")
def retrain(feast_env: str, root: Path, project: str | None, redis_url: str | None,
            bundles_root: Path, dataset: str | None, every: str | None, window_days: float,
            replay_fraction: float, epochs: int, margin: float, overrides: tuple[str, ...],
            use_ray: bool, num_workers: int, address: str | None, threads: int) -> None:
    """Fine-tune the served model on the stream's new examples, gate it, publish it."""
    import torch

    from ccrec.data.prepared import resolve
    from features.cli import open_from_options

    interval = parse_every(every) if every else None
    torch.set_num_threads(threads)
    for name in ("feast", "kafka"):
        logging.getLogger(name).setLevel(logging.WARNING)
    store = open_from_options(feast_env, root, project, redis_url)
    config = RetrainConfig(window_days=window_days, replay_fraction=replay_fraction,
                           epochs=epochs, margin=margin, overrides=overrides)
    ray_config = None
    if use_ray:
        import ray

        from ccrec.train.stage_runner import RayConfig

        ray_config = RayConfig(num_workers=num_workers, address=address)
        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)
    while True:
        started = time.monotonic()
        result = retrain_cycle(store, bundles_root, config,
                               prepared=resolve(dataset) if dataset else None,
                               ray_config=ray_config)
        click.echo(_report(result))
        if interval is None:
            return
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
