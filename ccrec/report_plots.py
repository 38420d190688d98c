"""Plots of the results report: readable with 17 rows.

:func:`interval_plot` draws one panel per metric; in each, a dot per row with
its 95 % bootstrap whiskers, rows sorted by that metric (best on top), the
highlighted row (CCRec) in red. :func:`sensitivity_plot` is the paper's
Fig. 7 (CCRec against |r_t|).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ccrec.metrics import COLUMNS

HIGHLIGHT = "CCRec"
PANEL_COLUMNS = 4


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def interval_plot(payload: Mapping[str, Any], group: str, path: Path, title: str) -> None:
    """One panel per metric of ``payload[group]``: dots with whiskers, rows sorted."""
    plt = _pyplot()
    rows = payload[group]
    metrics = [m for m in COLUMNS if not all(np.isnan(r[m]) for r in rows.values())]
    n_rows = math.ceil(len(metrics) / PANEL_COLUMNS)
    height = max(2.0, 0.28 * len(rows) + 1.2)
    fig, axes = plt.subplots(n_rows, PANEL_COLUMNS, squeeze=False,
                             figsize=(4.2 * PANEL_COLUMNS, height * n_rows))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        names = sorted(rows, key=lambda n: rows[n][metric])  # best at the top
        values = np.array([rows[n][metric] for n in names])
        lo = np.array([rows[n][f"{metric}_ci"][0] for n in names])
        hi = np.array([rows[n][f"{metric}_ci"][1] for n in names])
        colors = ["tab:red" if n == HIGHLIGHT else "tab:blue" for n in names]
        y = np.arange(len(names))
        ax.hlines(y, lo, hi, colors=colors, linewidth=1.4)
        ax.scatter(values, y, c=colors, s=18, zorder=3)
        ax.set_yticks(y, names, fontsize=7)
        for label in ax.get_yticklabels():
            if label.get_text() == HIGHLIGHT:
                label.set_color("tab:red")
                label.set_fontweight("bold")
        ax.set_title(metric, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    n, points = payload["n"][group], payload["points"][group]
    size = f"n = {n} users" + (f", {points} points" if points != n else "")
    protocol = payload.get("protocol") or {}
    fig.suptitle(f"{title}: {group} ({size}; future {protocol.get('future', '?')}); "
                 "dots with 95 % bootstrap intervals", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def sensitivity_plot(sensitivity: Mapping[str, Mapping[int, Mapping[str, float]]],
                     path: Path, title: str) -> None:
    """CCRec's HR@1 and HR@3 against |r_t| per group (paper Fig. 7)."""
    plt = _pyplot()
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
