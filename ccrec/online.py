"""The online accuracy report: the served model versions, measured on the clicks that followed.

The stream's online-accuracy consumer (``ccrec stream accuracy``) writes one
row per new category interaction joined with the answer served before it
(:data:`ROW_COLUMNS`) to a parquet log, :data:`LOG_SUBDIR` under the feature
store's root. :func:`online_table` summarises it per model version: online
HR@1, HR@3 and Precision@3 with n and 95 % bootstrap intervals (users are the
resampled units, :mod:`ccrec.bootstrap`); :func:`online_plot` draws HR@1 and
HR@3 over time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ccrec.bootstrap import intervals
from ccrec.metrics import MetricSums

#: The log's directory under the feature store's root (beside the offline logs).
LOG_SUBDIR = "data/offline/online_accuracy"
ROW_COLUMNS = ("time", "user_id", "model_version", "request_id", "impression_time",
               "category_id", "rank", "shown", "hit_at_1", "hit_at_3", "fallback")
KS = (1, 3)
METRICS = ("HR@1", "HR@3", "Precision@3")


def load_log(directory: str | Path) -> pd.DataFrame:
    """Every row of the log in ``directory`` (empty, with the columns, if there is none)."""
    parts = sorted(Path(directory).glob("part-*.parquet"))
    if not parts:
        return pd.DataFrame(columns=list(ROW_COLUMNS))
    rows = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return rows.sort_values("time", kind="stable").reset_index(drop=True)


def metric_sums(rows: pd.DataFrame) -> MetricSums:
    """The rows as :class:`MetricSums` over users (one point per row, one true category)."""
    n = len(rows)
    hits = np.column_stack([rows["hit_at_1"].to_numpy(bool), rows["hit_at_3"].to_numpy(bool)])
    shown = rows["shown"].to_numpy(np.float64)
    predicted = np.column_stack([np.minimum(k, shown) for k in KS])
    rank = rows["rank"].to_numpy(np.float64)
    points = MetricSums(KS, np.ones(n), hits.astype(np.float64), hits.astype(np.float64),
                        predicted, np.ones(n), np.where(rank > 0, 1 / np.maximum(rank, 1), 0.0),
                        np.arange(n))
    return points.by_unit(rows["user_id"].to_numpy())


def online_table(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per model version (first served first): users, points, the metrics and their
    95 % intervals (``<metric>_lo`` / ``<metric>_hi``), first and last click time."""
    out = []
    for version, part in rows.groupby("model_version", sort=False):
        sums = metric_sums(part)
        values, ci = sums.metrics(), intervals(sums, seed=seed)
        record = {"model_version": version, "users": len(sums), "points": len(part),
                  "first": part["time"].min(), "last": part["time"].max()}
        for m in METRICS:
            record[m], (record[f"{m}_lo"], record[f"{m}_hi"]) = values[m], ci[m]
        out.append(record)
    return pd.DataFrame(out)


def format_table(table: pd.DataFrame) -> str:
    """The table as markdown."""
    head = "| model version | users | points | " + " | ".join(METRICS) + " | first | last |"
    lines = [head, "|" + "---|" * (5 + len(METRICS))]
    for r in table.to_dict("records"):
        cells = [f"{r[m]:.3f} [{r[f'{m}_lo']:.3f}, {r[f'{m}_hi']:.3f}]" for m in METRICS]
        lines.append(f"| {r['model_version']} | {r['users']} | {r['points']} | "
                     + " | ".join(cells) + f" | {r['first']:%Y-%m-%d %H:%M:%S} | "
                     f"{r['last']:%Y-%m-%d %H:%M:%S} |")
    return "\n".join(lines)


def online_plot(rows: pd.DataFrame, path: Path, bins: int = 20) -> None:
    """HR@1 and HR@3 per model version over time (equal-count bins of each version's rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharex=True)
    for version, part in rows.groupby("model_version", sort=False):
        chunks = np.array_split(np.arange(len(part)), min(bins, len(part)))
        times = [part["time"].iloc[c].max() for c in chunks]
        for ax, column in zip(axes, ("hit_at_1", "hit_at_3"), strict=True):
            ax.plot(times, [part[column].iloc[c].mean() for c in chunks], marker="o",
                    label=f"{version} (n={len(part)})")
    for ax, name in zip(axes, ("online HR@1", "online HR@3"), strict=True):
        ax.set_title(name)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", labelrotation=30)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
