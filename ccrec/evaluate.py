"""Evaluation: any recommender on warm and cold test users, the paper's tables.

:func:`evaluate_recommender` is the one harness every row goes through (it
only calls ``score(batch)``), so CCRec, its ablations, the simple baselines
and later the paper's sequence baselines share splits and metrics.
:func:`run_evaluation` trains the cascade and its ablation rows on one data
set and writes the results table (markdown, CSV, JSON), a bar chart and the
|r_t| sensitivity plot (paper Fig. 7).
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

import numpy as np
import torch

from ccrec.data.tables import UserTable, make_loader
from ccrec.metrics import COLUMNS, KS, HitCounter

log = logging.getLogger(__name__)

ROWS = ("Popularity", "Last-category", "MLE", "MLE+VAE", "MLE+Cascading", "CCRec")
#: The rows that need the trained cascade.
CASCADE_ROWS = ("MLE", "MLE+VAE", "MLE+Cascading", "CCRec")
GROUPS = {"warm": "warm_test", "cold": "cold_test"}
SENSITIVITY_SIZES = (1, 3, 5, 7, 9, 11, 15, 20)


@torch.no_grad()
def evaluate_recommender(recommender: Any, table: UserTable, ks: Sequence[int] = KS,
                         batch_size: int = 1024) -> dict[str, float]:
    """HR/Precision/Recall/F1@k of ``recommender.score`` on the users of ``table``."""
    if hasattr(recommender, "eval"):
        recommender.eval()
    counter = HitCounter(ks)
    kmax = max(ks)
    for batch in make_loader(table, batch_size, shuffle=False):
        scores = recommender.score(batch).clone()  # [B, C+1]
        scores[:, 0] = -torch.inf
        top = scores.topk(min(kmax, scores.shape[1] - 1), -1).indices.numpy()
        counter.add(top, [table.future[r] for r in batch.rows.tolist()])
    return counter.result()


def markdown_table(results: dict[str, dict[str, float]], columns: Sequence[str] = COLUMNS) -> str:
    lines = ["| model | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.4f}" for c in columns) + " |")
    return "\n".join(lines)


def csv_table(results: dict[str, dict[str, float]], group: str,
              columns: Sequence[str] = COLUMNS) -> list[str]:
    return [f"{group},{name}," + ",".join(f"{metrics[c]:.6f}" for c in columns)
            for name, metrics in results.items()]


def write_results(results: dict[str, dict[str, dict[str, float]]], out_dir: Path,
                  title: str, json_path: Path | None = None,
                  sensitivity: dict[str, dict[int, dict[str, float]]] | None = None) -> None:
    """results[group][row][metric] → results.md/.csv/.json, results.png, sensitivity.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {g: {r: {c: m[c] for c in COLUMNS} for r, m in rows.items()}
               for g, rows in results.items()}
    (out_dir / "results.json").write_text(json.dumps(payload, indent=2))
    if json_path is not None:
        write_results_json(payload, json_path)
    md = [f"# {title}"]
    for group, rows in results.items():
        md += ["", f"## {group} users", "", markdown_table(rows)]
    (out_dir / "results.md").write_text("\n".join(md) + "\n")
    csv = ["group,model," + ",".join(COLUMNS)]
    for group, rows in results.items():
        csv += csv_table(rows, group)
    (out_dir / "results.csv").write_text("\n".join(csv) + "\n")
    _bar_chart(results, out_dir / "results.png", title)
    if sensitivity:
        (out_dir / "sensitivity.json").write_text(json.dumps(
            {g: {str(s): m for s, m in v.items()} for g, v in sensitivity.items()}, indent=2))
        _sensitivity_plot(sensitivity, out_dir / "sensitivity.png", title)


def write_results_json(payload: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    """Merge ``payload`` into the results file at ``path``: a row of this run
    replaces the row of that name, other rows stay. Runs of different model
    subsets on the same prepared splits and seed (the harness is deterministic)
    thus add up to one table, e.g. the paper's baselines after the cascade."""
    merged: dict[str, dict[str, dict[str, float]]] = {}
    if path.exists():
        merged = json.loads(path.read_text())
    for group, rows in payload.items():
        merged.setdefault(group, {}).update(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merged, indent=2))


def _bar_chart(results, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(14, 4 * len(results)), squeeze=False)
    for ax, (group, rows) in zip(axes[:, 0], results.items(), strict=True):
        width = 0.8 / max(len(rows), 1)
        x = np.arange(len(COLUMNS))
        colors = plt.get_cmap("tab20").colors  # 20 distinct colours: every row its own
        for i, (name, metrics) in enumerate(rows.items()):
            ax.bar(x + i * width, [metrics[c] for c in COLUMNS], width, label=name,
                   color=colors[i % len(colors)])
        ax.set_xticks(x + 0.4 - width / 2, COLUMNS, rotation=30)
        ax.set_title(f"{title}: {group} users")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _sensitivity_plot(sensitivity, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sensitivity), figsize=(6 * len(sensitivity), 4),
                             squeeze=False)
    for ax, (group, by_size) in zip(axes[0], sensitivity.items(), strict=True):
        sizes = sorted(by_size)
        for metric in ("HR@1", "HR@3"):
            ax.plot(sizes, [by_size[s][metric] for s in sizes], marker="o", label=metric)
        ax.set_xlabel("|r_t|")
        ax.set_title(f"{title}: effect of |r_t|, {group} users")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_evaluation(prepared, config, *, out_dir: Path, json_path: Path | None = None,
                   sensitivity_sizes: Sequence[int] = SENSITIVITY_SIZES,
                   bundle_root: Path | None = None, title: str | None = None,
                   rows: Sequence[str] = ROWS,
                   baselines: Sequence[str] = ()) -> dict[str, Any]:
    """Train the cascade and the ablations, evaluate every row, write the files.

    Rows: Popularity; Last-category; MLE (M1 alone); MLE+VAE (scorer with VAE
    embeddings, plain MSE); MLE+Cascading (scorer without VAE, precision loss);
    CCRec (everything). Hyperparameters come from ``config`` (chosen on the
    validation split); the test splits are only scored.

    ``baselines`` names entries of :data:`ccrec.baselines.paper.PAPER_BASELINES`
    (the paper's §6.2 rows), trained with ``config.train_sampler``'s settings
    (M1's budget) and early-stopped on the validation users. ``summary.json``
    records each row's training seconds and inference ms per user.
    """
    from ccrec.baselines.popularity import LastCategory, Popularity
    from ccrec.train.cascade import build_tables, train_cascade

    started = time.perf_counter()
    # The cascade is trained only when a row needs it, so the paper's baselines
    # can be (re)run alone on the very same splits.
    result = train_cascade(prepared, config) if set(rows) & set(CASCADE_ROWS) else None
    tables = result.tables if result is not None else build_tables(prepared, config)
    models: dict[str, Any] = {}
    pop = Popularity(prepared.num_categories)
    pop.fit(tables["train"])
    last = LastCategory(prepared.num_categories)
    last.fit(tables["train"])
    models["Popularity"], models["Last-category"] = pop, last
    fits: dict[str, Any] = {}
    train_seconds: dict[str, float] = {}
    scorer = config.scorer
    if result is not None:
        models["MLE"] = result.model.sampler
        fits["CCRec"] = result.fits["m2"]
        if "MLE+VAE" in rows:
            models["MLE+VAE"], fits["MLE+VAE"] = result.with_scorer(
                replace(scorer, use_vae=True, precision_loss="none"))
        if "MLE+Cascading" in rows:
            models["MLE+Cascading"], fits["MLE+Cascading"] = result.with_scorer(
                replace(scorer, use_vae=False))
        models["CCRec"] = result.model
        train_seconds = {"MLE": result.seconds["m1"], "CCRec": result.seconds["total"]}
    if baselines:
        from ccrec.baselines.paper import PAPER_BASELINES, DataSpec

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
    results: dict[str, dict[str, dict[str, float]]] = {g: {} for g in GROUPS}
    timings: dict[str, dict[str, float]] = {}
    for name in rows:
        if name not in models:
            continue
        t, users = time.perf_counter(), 0
        for group, split in GROUPS.items():
            results[group][name] = evaluate_recommender(models[name], tables[split])
            users += len(tables[split])
        timings[name] = {"train_seconds": train_seconds.get(name, math.nan),
                         "inference_ms_per_user": 1000 * (time.perf_counter() - t) / max(users, 1)}
    valid = {name: evaluate_recommender(models[name], tables["valid"])
             for name in rows if name in models}
    sensitivity: dict[str, dict[int, dict[str, float]]] = {g: {} for g in GROUPS}
    for size in sensitivity_sizes if result is not None else ():
        cands = replace(config.candidates, size=size)
        model, _ = result.with_scorer(scorer, candidates=cands)
        for group, split in GROUPS.items():
            sensitivity[group][size] = evaluate_recommender(model, tables[split])
    write_results(results, out_dir, title or prepared.meta.get("name", "results"), json_path,
                  sensitivity if sensitivity_sizes and result is not None else None)
    summary = {
        "results": results, "valid": valid, "seconds": time.perf_counter() - started,
        "cascade_seconds": result.seconds if result is not None else {}, "timings": timings,
        "fits": {name: {"best_epoch": f.best_epoch, "best_value": f.best_value,
                        "epochs": len(f.history), "examples_per_s": f.examples_per_s}
                 for name, f in {**(result.fits if result is not None else {}), **fits}.items()},
    }
    (out_dir / "summary.json").write_text(json.dumps(
        {**summary, "sensitivity": {g: {str(s): m for s, m in v.items()}
                                    for g, v in sensitivity.items()}}, indent=2, default=float))
    if bundle_root is not None and result is not None:
        from ccrec.bundle import save_bundle

        summary["bundle"] = str(save_bundle(
            result.model, config, prepared.vocab, bundle_root,
            dataset=prepared.meta.get("name", ""),
            metrics={"test": results, "valid": valid.get("CCRec", {}), "fits": summary["fits"]}))
    return summary
