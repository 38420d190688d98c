"""Evaluation harness: every recommender on warm, cold and replayed test users.

:func:`ccrec.metrics.evaluate_sums` is the one harness every row goes through (it only
calls ``score(batch)``), so CCRec, its ablations, the simple baselines and
the paper's baselines share splits, inputs and metrics. It keeps per-user
sums (:class:`ccrec.metrics.MetricSums`) so that :mod:`ccrec.report` can
give every number its bootstrap interval and run paired tests.

:func:`run_evaluation` trains the cascade and its ablation rows and the
baselines on one data set, scores each on the three test groups, stores each
row's sums under ``<out>/rows/`` and writes the report. Rows of separate
runs on the same prepared data (same units) add up in one report.

**What every row sees:** the batch of :class:`ccrec.batch.CategoryBatch` —
the last ``max_past`` category interactions before the feature time with
their item profiles, and f_t — the same input as the cascade.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ccrec.baselines.paper import PAPER_BASELINES
from ccrec.data.tables import UserTable
from ccrec.metrics import evaluate_recommender, evaluate_sums
from ccrec.report import load_rows, save_protocol, save_row, write_report

log = logging.getLogger(__name__)

SIMPLE_ROWS = ("Popularity", "Last-category", "Personal-frequency", "Markov", "TIFU-KNN")
#: The rows that need the trained cascade.
CASCADE_ROWS = ("MLE", "MLE+VAE", "MLE+Cascading", "CCRec")
ROWS = (*SIMPLE_ROWS, *CASCADE_ROWS)
#: Every row in table order: ours, then the paper's baselines (§6.2).
ROW_ORDER = (*ROWS, *PAPER_BASELINES)
#: Test groups and the split each is drawn from (the replay spans both test splits).
GROUPS = {"warm": "warm_test", "cold": "cold_test", "replay": "replay"}
SENSITIVITY_SIZES = (1, 3, 5, 7, 9, 11, 15, 20)


def _simple_rows(tables: dict[str, UserTable], num_categories: int,
                 rows: Sequence[str]) -> dict[str, Any]:
    """The non-neural rows, fitted on training examples (choices on validation)."""
    from ccrec.baselines.frequency import PersonalFrequency
    from ccrec.baselines.markov import Markov
    from ccrec.baselines.popularity import LastCategory, Popularity
    from ccrec.baselines.tifuknn import TIFUKNN

    factories = {"Popularity": Popularity, "Last-category": LastCategory,
                 "Personal-frequency": PersonalFrequency, "Markov": Markov,
                 "TIFU-KNN": TIFUKNN}
    models = {}
    for name in rows:
        if name in factories:
            models[name] = factories[name](num_categories)
            models[name].fit(tables["train"], tables["valid"])
    return models


def run_evaluation(prepared, config, *, out_dir: Path, json_path: Path | None = None,
                   sensitivity_sizes: Sequence[int] = SENSITIVITY_SIZES,
                   bundle_root: Path | None = None, title: str | None = None,
                   rows: Sequence[str] = ROWS, baselines: Sequence[str] = (),
                   replay_points: int | None = None) -> dict[str, Any]:
    """Train the requested rows, score them on warm, cold and replay users, report.

    Rows: the simple baselines (:data:`SIMPLE_ROWS`); MLE (M1 alone); MLE+VAE
    (scorer with VAE embeddings, plain MSE); MLE+Cascading (scorer without
    VAE, precision loss); CCRec (everything); ``baselines`` names entries of
    :data:`ccrec.baselines.paper.PAPER_BASELINES`, trained with
    ``config.train_sampler``'s settings (M1's budget). Every choice is made on
    the validation users; the test groups are only scored. ``summary.json``
    records each row's training seconds and inference ms per evaluation point.
    """
    from ccrec.baselines.paper import DataSpec
    from ccrec.data.replay import MAX_POINTS_PER_USER, replay_examples
    from ccrec.train.cascade import build_tables, train_cascade

    started = time.perf_counter()
    save_protocol(out_dir, prepared.meta.get("protocol"))
    result = train_cascade(prepared, config) if set(rows) & set(CASCADE_ROWS) else None
    tables = dict(result.tables if result is not None else build_tables(prepared, config))
    replay = replay_examples(prepared, replay_points or MAX_POINTS_PER_USER)
    tables["replay"] = UserTable(replay, prepared.num_categories, config.max_past,
                                 config.encoder.item_profile_dim)
    models = _simple_rows(tables, prepared.num_categories, rows)
    fits: dict[str, Any] = {}
    train_seconds: dict[str, float] = {}
    if result is not None:
        models["MLE"] = result.model.sampler
        fits["CCRec"] = result.fits["m2"]
        if "MLE+VAE" in rows:
            models["MLE+VAE"], fits["MLE+VAE"] = result.with_scorer(
                replace(config.scorer, use_vae=True, precision_loss="none"))
        if "MLE+Cascading" in rows:
            models["MLE+Cascading"], fits["MLE+Cascading"] = result.with_scorer(
                replace(config.scorer, use_vae=False))
        models["CCRec"] = result.model
        train_seconds = {"MLE": result.seconds["m1"], "CCRec": result.seconds["total"]}
    if baselines:
        spec = DataSpec(prepared.num_categories, config.max_past,
                        config.encoder.item_profile_dim, tuple(prepared.feature_cardinalities))
        for name in baselines:
            torch.manual_seed(config.seed)
            models[name] = PAPER_BASELINES[name](spec, replace(config.train_sampler,
                                                               seed=config.seed))
            t = time.perf_counter()
            fit = models[name].fit(tables["train"], tables["valid"])
            train_seconds[name] = time.perf_counter() - t
            if fit is not None:
                fits[name] = fit
        rows = [*rows, *baselines]
    timings: dict[str, dict[str, float]] = {}
    for name in rows:
        if name not in models:
            continue
        t, points = time.perf_counter(), 0
        for group, split in GROUPS.items():
            if not len(tables[split]):
                continue
            save_row(out_dir, group, name, evaluate_sums(models[name], tables[split]))
            points += len(tables[split])
        timings[name] = {"train_seconds": train_seconds.get(name, math.nan),
                         "inference_ms_per_point": 1000 * (time.perf_counter() - t)
                         / max(points, 1)}
        log.info("scored %s", name)
    valid = {name: evaluate_recommender(models[name], tables["valid"])
             for name in rows if name in models}
    sensitivity: dict[str, dict[int, dict[str, float]]] = {g: {} for g in ("warm", "cold")}
    for size in sensitivity_sizes if result is not None else ():
        model, _ = result.with_scorer(config.scorer,
                                      candidates=replace(config.candidates, size=size))
        for group in sensitivity:
            sensitivity[group][size] = evaluate_recommender(model, tables[GROUPS[group]])
    report = write_report(load_rows(out_dir, order=ROW_ORDER), out_dir,
                          title or prepared.meta.get("name", "results"),
                          protocol=prepared.meta.get("protocol"), json_path=json_path,
                          sensitivity=sensitivity if sensitivity_sizes and result else None)
    summary = {
        "report": report, "valid": valid, "seconds": time.perf_counter() - started,
        "cascade_seconds": result.seconds if result is not None else {}, "timings": timings,
        "fits": {name: {"best_epoch": f.best_epoch, "best_value": f.best_value,
                        "epochs": len(f.history), "examples_per_s": f.examples_per_s}
                 for name, f in {**(result.fits if result is not None else {}), **fits}.items()},
        "train_examples": len(tables["train"]),
    }
    _merge_summary(out_dir / "summary.json", summary)
    if bundle_root is not None and result is not None:
        from ccrec.bundle import save_bundle

        summary["bundle"] = str(save_bundle(
            result.model, config, prepared.vocab, bundle_root,
            dataset=prepared.meta.get("name", ""),
            metrics={"test": {g: report[g].get("CCRec", {}) for g in GROUPS},
                     "valid": valid.get("CCRec", {}), "fits": summary["fits"]}))
    return summary


def _merge_summary(path: Path, summary: dict[str, Any]) -> None:
    """summary.json of this run, with the timings/fits/valid rows of earlier runs
    in the same directory kept (a row of this run replaces its namesake)."""
    merged: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for key in ("timings", "fits", "valid"):
        summary = {**summary, key: {**merged.get(key, {}), **summary[key]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({k: v for k, v in summary.items() if k != "report"},
                               indent=2, default=float))
