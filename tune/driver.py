"""The tuning driver: Ray Tune trials that each launch the cascade's Ray Train jobs.

The current Ray Tune + Ray Train integration (Train V2): a trial is a plain
*driver function* (:func:`cascade_trial`) that builds and runs TorchTrainers;
the scorer's trainer carries ``TuneReportCallback`` so each M2 epoch's
validation metrics reach Tune, where ASHA stops weak trials early. (Passing a
Trainer into a Tuner is deprecated.) Optuna proposes the points when it is
installed, random search otherwise.

M1 and the VAE are cached by their configuration (``stage_cache``), so trials
that differ only in M2 / candidate settings train the first two stages once.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune
from ray.tune import ResultGrid
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler

from ccrec.config import to_dict
from ccrec.models.cascade import CascadeConfig
from ccrec.train.run import train_and_bundle
from ccrec.train.stage_runner import RayConfig
from tune.space import OBJECTIVES, apply_params, split_space

log = logging.getLogger(__name__)


def cascade_trial(params: dict[str, Any], *, path: str, base: CascadeConfig,
                  fixed: dict[str, Any], ray_config: RayConfig, out_dir: str,
                  experiment: str) -> None:
    """One Tune trial: train the cascade on Ray Train with ``params`` and bundle it."""
    trial_id = tune.get_context().get_trial_id()
    config = apply_params(base, {**fixed, **params})
    out = Path(out_dir)
    trial_ray = replace(ray_config, name=f"{experiment}-{trial_id}",
                        storage_path=str(out / "ray"))
    train_and_bundle(Path(path), config, out / "bundles" / trial_id, ray_config=trial_ray,
                     m2_callbacks=[TuneReportCallback()], stage_cache=out / "stage-cache")


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the summary reads it.

    Args:
        trial_id: Tune's trial id.
        params: the sampled hyperparameters.
        history: one row per reported M2 epoch, with ``training_iteration``
            (1, 2, …), ``epoch`` and the ``valid_<objective>`` column.
    """

    trial_id: str
    params: dict[str, Any]
    history: pd.DataFrame


def trial_records(grid: ResultGrid, metric: str) -> list[TrialRecord]:
    """The trials of a finished Tune run that reported ``metric`` and did not fail."""
    return [TrialRecord(str(r.metrics["trial_id"]), dict(r.config), r.metrics_dataframe)
            for r in grid
            if r.error is None and r.metrics_dataframe is not None
            and metric in r.metrics_dataframe]


def summarise_trials(records: list[TrialRecord], objective: str,
                     max_epochs: int) -> pd.DataFrame:
    """One row per trial, best first: its parameters, its best epoch's objective,
    epochs run and whether ASHA stopped it before ``max_epochs``.

    Ties keep the order of ``records``.
    """
    if not records:
        raise ValueError("no trial reported a validation metric")
    metric = f"valid_{objective}"
    rows = []
    for record in records:
        history = record.history
        best = history.loc[history[metric].idxmax()]
        epochs_run = int(history["training_iteration"].max())
        rows.append({"trial_id": record.trial_id,
                     **{f"param_{k}": v for k, v in record.params.items()},
                     objective: float(best[metric]), "best_epoch": int(best["epoch"]),
                     "epochs_run": epochs_run, "stopped_early": epochs_run < max_epochs})
    return (pd.DataFrame(rows).sort_values(objective, ascending=False, kind="stable")
            .reset_index(drop=True))


def best_params(trials: pd.DataFrame, fixed: dict[str, Any]) -> dict[str, Any]:
    """The best (first) trial's hyperparameters with the fixed ones, as plain Python values."""
    best = trials.iloc[0]
    return {**fixed, **{k.removeprefix("param_"): _plain(v) for k, v in best.items()
                        if k.startswith("param_")}}


@dataclass
class TuneSummary:
    """What ``ccrec tune`` found.

    Args:
        best_params: the best trial's hyperparameters (fixed ones included).
        best_value: its objective value.
        best_trial: its trial id.
        bundle: the best configuration's model bundle.
        table: CSV of all trials; plot: PNG of their learning curves.
        trials: the table itself (:func:`summarise_trials`).
    """

    best_params: dict[str, Any]
    best_value: float
    best_trial: str
    bundle: Path
    table: Path
    plot: Path
    trials: pd.DataFrame


def _optuna(metric: str, seed: int):
    try:
        from ray.tune.search.optuna import OptunaSearch
    except ImportError:  # optuna is optional for tuning
        return None
    try:
        return OptunaSearch(metric=metric, mode="max", seed=seed)
    except (ImportError, AssertionError, RuntimeError):
        return None


def run_tuning(path: Path, base: CascadeConfig, ray_config: RayConfig, out_dir: Path, *,
               num_samples: int = 8, objective: str = OBJECTIVES[0],
               fixed: dict[str, Any] | None = None, max_concurrent: int = 1,
               grace_period: int = 1, use_optuna: bool = True, seed: int = 0,
               name: str | None = None) -> TuneSummary:
    """Search the cascade's hyperparameters; record the best config, its bundle, table, plot.

    Args:
        path: the prepared data directory.
        base: the configuration the sampled points modify.
        ray_config: Ray Train workers per trial (and GPUs).
        out_dir: where trials, bundles, ``trials.csv``, ``trials.png`` and ``best.json`` go.
        num_samples: trials.
        objective: one of :data:`tune.space.OBJECTIVES` on the validation users
            (maximised); M2's early stopping monitors it too, so a trial's bundle
            holds the epoch the objective chose.
        fixed: hyperparameters held constant (removed from the space).
        max_concurrent: trials at once (each takes ``num_workers`` CPUs).
        grace_period: M2 epochs before ASHA may stop a trial.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}")
    fixed = dict(fixed or {})
    base = replace(base, train_scorer=replace(base.train_scorer, monitor=objective))
    metric = f"valid_{objective}"
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or f"tune-{time.strftime('%Y%m%d-%H%M%S')}"
    # max_t beyond the last M2 epoch: ASHA stops trials only at its rungs, so a trial
    # that survives them ends by itself and writes its bundle.
    scheduler = ASHAScheduler(time_attr="training_iteration",
                              max_t=max(base.train_scorer.epochs, grace_period) + 1,
                              grace_period=grace_period, reduction_factor=2)
    searcher = _optuna(metric, seed) if use_optuna else None
    trainable = tune.with_parameters(
        cascade_trial, path=str(path), base=base, fixed=fixed, ray_config=ray_config,
        out_dir=str(out_dir), experiment=name)
    # The driver function only launches trainers; their workers hold the CPUs.
    # (A trial needs some resource: one byte of memory instead of a CPU.)
    trainable = tune.with_resources(trainable, {"cpu": 0, "memory": 1})
    tuner = tune.Tuner(
        trainable,
        param_space=split_space(fixed),
        tune_config=tune.TuneConfig(metric=metric, mode="max", scheduler=scheduler,
                                    search_alg=searcher, num_samples=num_samples,
                                    max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(name=name, storage_path=str(out_dir / "tune"),
                                  verbose=0),
    )
    grid = tuner.fit()
    errors = [r.error for r in grid if r.error is not None]
    if len(errors) == len(grid):
        raise RuntimeError(f"every trial failed; first error: {errors[0]}")

    records = trial_records(grid, metric)
    trials = summarise_trials(records, objective, base.train_scorer.epochs)
    table = out_dir / "trials.csv"
    trials.to_csv(table, index=False)
    (out_dir / "trials.md").write_text(trials.to_markdown(index=False, floatfmt=".4f") + "\n")
    curves = {r.trial_id: r.history[["training_iteration", metric]] for r in records}
    plot = _plot(curves, trials, objective, out_dir / "trials.png")

    best_trial, best_value = str(trials.loc[0, "trial_id"]), float(trials.loc[0, objective])
    params = best_params(trials, fixed)
    config = apply_params(base, params)
    bundle = best_bundle(out_dir, best_trial, path, config, ray_config)
    record = {"objective": objective, "value": best_value, "trial_id": best_trial,
              "params": params, "config": to_dict(config), "bundle": str(bundle),
              "trials": len(trials), "table": str(table), "plot": str(plot),
              "searcher": "optuna" if searcher else "random", "scheduler": "asha"}
    (out_dir / "best.json").write_text(json.dumps(record, indent=2))
    return TuneSummary(params, best_value, best_trial, bundle, table, plot, trials)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def best_bundle(out_dir: Path, trial_id: str, path: Path, config: CascadeConfig,
                ray_config: RayConfig) -> Path:
    """The best trial's bundle, copied to ``out_dir/best-bundle``; retrained if ASHA
    stopped that trial before it could write one."""
    versions = sorted((out_dir / "bundles" / trial_id).glob("*/manifest.json"))
    target = out_dir / "best-bundle"
    if target.exists():
        shutil.rmtree(target)
    if versions:
        shutil.copytree(versions[-1].parent, target / versions[-1].parent.name)
        return target / versions[-1].parent.name
    log.info("best trial %s was stopped early; retraining its configuration", trial_id)
    retrain = replace(ray_config, name=f"best-{trial_id}", storage_path=str(out_dir / "ray"))
    return train_and_bundle(path, config, target, ray_config=retrain,
                            stage_cache=out_dir / "stage-cache").path


def _plot(curves: dict[str, pd.DataFrame], trials: pd.DataFrame, objective: str,
          path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    metric = f"valid_{objective}"
    for trial_id, curve in curves.items():
        left.plot(curve["training_iteration"], curve[metric], marker="o", label=trial_id)
    left.set(xlabel="M2 epoch (Tune iteration)", ylabel=f"validation {objective}",
             title="trials (ASHA stops the weak ones)")
    if len(curves) <= 12:
        left.legend(fontsize=7)
    order = range(len(trials))
    right.bar(order, trials[objective], color=["tab:green"] + ["tab:gray"] * (len(trials) - 1))
    right.set_xticks(list(order), trials["trial_id"], rotation=45, fontsize=7)
    right.set(ylabel=f"best validation {objective}", title="best epoch per trial")
    low = trials[objective].min()
    if not math.isnan(low):
        right.set_ylim(max(0.0, low - 0.05), min(1.0, trials[objective].max() + 0.05))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
