"""Results files of an evaluation: tables, plots and the results JSON.

Input: per test group (warm, cold, replay) and row, the per-user
:class:`~ccrec.metrics.MetricSums` (saved by :func:`save_row`, one ``.npz``
per row, so rows of separate runs on the same prepared data add up). Output:

* ``results.json`` (and ``--json``): ``protocol``, ``n`` (users per group),
  ``points`` (evaluation points per group), per group and row every metric
  with its 95 % bootstrap interval (``<metric>_ci``), ``significance`` (a
  paired bootstrap of CCRec against the best other row per metric) and
  ``best`` (per metric, the top row and whether it beats the runner-up
  significantly);
* ``results.md`` / ``results.csv``: the same as tables; a cell is bold only
  when its row is significantly best (p < 0.05, paired, runner-up);
* ``results-<group>.png``: one panel per metric, a dot per row with its 95 %
  whiskers, rows sorted, CCRec highlighted;
* ``sensitivity.{json,png}``: CCRec against |r_t| (paper Fig. 7), if given;
* ``report.html``: all of it on one self-contained page (:mod:`ccrec.report_html`).

A secondary payload (the same rows on another task, e.g. ``future: all``)
rides along under ``secondary`` and gets its own tables.

All intervals and tests of a group reuse one seeded set of resamples.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccrec.bootstrap import DRAWS, LEVEL, intervals, paired_test, resample_weights
from ccrec.metrics import COLUMNS, MetricSums

HIGHLIGHT = "CCRec"
ALPHA = 0.05
#: Metrics tested for "best" and for CCRec's significance (every column).
TESTED = COLUMNS
RowSums = dict[str, dict[str, MetricSums]]
#: Test groups in table order (others follow by name).
GROUP_ORDER = ("warm", "cold", "replay")


def save_row(out_dir: Path, group: str, row: str, sums: MetricSums) -> Path:
    """Store one row's per-user sums of one group (replacing an earlier run's)."""
    path = Path(out_dir) / "rows" / group / f"{row}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, ks=np.asarray(sums.ks), points=sums.points, hit_points=sums.hit_points,
             hits=sums.hits, predicted=sums.predicted, truths=sums.truths,
             reciprocal_rank=sums.reciprocal_rank, units=sums.units)
    return path


def save_protocol(out_dir: Path, protocol: Mapping[str, Any] | None) -> None:
    """Record the task the stored rows were scored on; rows of another task refuse."""
    path = Path(out_dir) / "rows" / "protocol.json"
    if path.exists() and json.loads(path.read_text()) != dict(protocol or {}):
        raise ValueError(f"{out_dir} holds rows of the task {path.read_text().strip()}, not "
                         f"{dict(protocol or {})}; use another --out-dir")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(protocol or {})))


def load_protocol(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / "rows" / "protocol.json"
    return json.loads(path.read_text()) if path.exists() else {}


def load_rows(out_dir: Path, order: Sequence[str] = ()) -> RowSums:
    """Every stored row per group (groups in :data:`GROUP_ORDER`); rows named in
    ``order`` first, in that order."""
    rows: RowSums = {}
    place = {g: i for i, g in enumerate(GROUP_ORDER)}
    for group_dir in sorted((p for p in (Path(out_dir) / "rows").glob("*") if p.is_dir()),
                            key=lambda p: (place.get(p.name, len(place)), p.name)):
        found = {}
        for path in group_dir.glob("*.npz"):
            with np.load(path) as z:
                found[path.stem] = MetricSums(
                    tuple(int(k) for k in z["ks"]), z["points"], z["hit_points"], z["hits"],
                    z["predicted"], z["truths"], z["reciprocal_rank"], z["units"])
        rank = {name: i for i, name in enumerate(order)}
        names = sorted(found, key=lambda n: (rank.get(n, len(rank)), n))
        rows[group_dir.name] = {name: found[name] for name in names}
    return rows


def _check_same_units(group: str, rows: Mapping[str, MetricSums]) -> None:
    first = next(iter(rows.values()))
    for name, sums in rows.items():
        if not np.array_equal(sums.units, first.units):
            raise ValueError(f"{group}: row {name!r} was scored on other users than the "
                             "rest; re-run it on the same prepared data")


def _group_report(group: str, rows: Mapping[str, MetricSums], draws: int,
                  seed: int) -> dict[str, Any]:
    _check_same_units(group, rows)
    first = next(iter(rows.values()))
    weights = resample_weights(len(first), draws, seed)
    table: dict[str, dict[str, Any]] = {}
    for name, sums in rows.items():
        point, ci = sums.metrics(), intervals(sums, weights=weights)
        table[name] = {}
        for metric in COLUMNS:
            table[name][metric] = point[metric]
            table[name][f"{metric}_ci"] = list(ci[metric])
    best, significance = {}, {}
    for metric in TESTED:
        ranked = sorted((n for n in rows if not np.isnan(table[n][metric])),
                        key=lambda n: -table[n][metric])
        if len(ranked) < 2:
            continue
        top, runner_up = ranked[0], ranked[1]
        test = paired_test(rows[top], rows[runner_up], metric, weights=weights)
        best[metric] = {"row": top, "runner_up": runner_up, "p": test.p,
                        "significant": bool(test.p < ALPHA and test.diff > 0)}
        if HIGHLIGHT in rows:
            other = next(n for n in ranked if n != HIGHLIGHT)
            vs = paired_test(rows[HIGHLIGHT], rows[other], metric, weights=weights)
            significance[metric] = {"best_other": other, "metric": metric, "diff": vs.diff,
                                    "diff_ci": list(vs.diff_ci), "p": vs.p}
    return {"n": len(first), "points": int(first.points.sum()), "rows": table,
            "best": best, "significance": significance}


def build_report(rows: RowSums, protocol: Mapping[str, Any] | None = None,
                 draws: int = DRAWS, seed: int = 0) -> dict[str, Any]:
    """The results JSON (see the module docstring) of ``rows[group][row]``."""
    groups = {g: _group_report(g, r, draws, seed) for g, r in rows.items() if r}
    payload: dict[str, Any] = {
        "protocol": dict(protocol or {}),
        "n": {g: rep["n"] for g, rep in groups.items()},
        "points": {g: rep["points"] for g, rep in groups.items()},
        "bootstrap": {"draws": draws, "seed": seed, "level": LEVEL,
                      "unit": "user (a replayed user's points are one unit)"},
    }
    for g, rep in groups.items():
        payload[g] = rep["rows"]
    payload["significance"] = {
        g: {**rep["significance"]["HR@1"], "by_metric": rep["significance"]}
        for g, rep in groups.items() if "HR@1" in rep["significance"]}
    payload["best"] = {g: rep["best"] for g, rep in groups.items()}
    return payload


def _cell(row: Mapping[str, Any], metric: str, bold: bool) -> str:
    value, (lo, hi) = row[metric], row[f"{metric}_ci"]
    if np.isnan(value):
        return "–"
    text = f"{value:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"**{text}**" if bold else text


def markdown(payload: Mapping[str, Any], title: str,
             columns: Sequence[str] = COLUMNS) -> str:
    """The report's tables: per group, rows × metrics with 95 % intervals."""
    protocol = payload.get("protocol") or {}
    lines = [f"# {title}", "",
             f"Protocol: future `{protocol.get('future', '?')}`, "
             f"max_past {protocol.get('max_past', '?')}. Cells: value [95 % bootstrap "
             "interval over users]; **bold** = best, significantly better than the "
             f"runner-up (paired bootstrap, p < {ALPHA})."]
    for group in payload["n"]:
        n, points = payload["n"][group], payload["points"][group]
        size = f"n = {n} users" + (f", {points} points" if points != n else "")
        lines += ["", f"## {group} ({size})", "",
                  "| row | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        best = payload["best"].get(group, {})
        for name, row in payload[group].items():
            cells = [_cell(row, m, best.get(m, {}).get("row") == name
                           and best[m]["significant"]) for m in columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        sig = payload["significance"].get(group)
        if sig:
            lines += ["", "CCRec against the best other row (paired bootstrap): " + "; ".join(
                f"{m} vs {s['best_other']}: Δ = {s['diff']:+.3f} "
                f"[{s['diff_ci'][0]:+.3f}, {s['diff_ci'][1]:+.3f}], p = {s['p']:.3g}"
                for m, s in sig["by_metric"].items() if m in ("HR@1", "Precision@3", "MRR"))]
    return "\n".join(lines) + "\n"


def csv_lines(payload: Mapping[str, Any]) -> list[str]:
    header = ["group", "model"] + [f"{m}{s}" for m in COLUMNS for s in ("", "_lo", "_hi")]
    out = [",".join(header)]
    for group in payload["n"]:
        for name, row in payload[group].items():
            values = [v for m in COLUMNS for v in (row[m], *row[f"{m}_ci"])]
            out.append(f"{group},{name}," + ",".join(f"{v:.6f}" for v in values))
    return out


def write_report(rows: RowSums, out_dir: Path, title: str, *,
                 protocol: Mapping[str, Any] | None = None, json_path: Path | None = None,
                 sensitivity: Mapping[str, Mapping[int, Mapping[str, float]]] | None = None,
                 secondary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write results.{json,md,csv}, one plot per group, the |r_t| sweep and report.html
    (``secondary``: the payload of the same rows on another task, shown after)."""
    from ccrec.report_html import render
    from ccrec.report_plots import interval_plot, sensitivity_plot

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = build_report(rows, protocol)
    if secondary:
        payload["secondary"] = {k: v for k, v in secondary.items() if k != "secondary"}
    text = json.dumps(payload, indent=2)
    (out_dir / "results.json").write_text(text)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text)
    text_md = markdown(payload, title)
    if secondary:
        future = payload["secondary"].get("protocol", {}).get("future", "?")
        text_md += "\n" + markdown(payload["secondary"], f"Secondary task: future {future}")
    (out_dir / "results.md").write_text(text_md)
    (out_dir / "results.csv").write_text("\n".join(csv_lines(payload)) + "\n")
    plots = {g: out_dir / f"results-{g}.png" for g in payload["n"]}
    for group, path in plots.items():
        interval_plot(payload, group, path, title)
    if sensitivity:
        (out_dir / "sensitivity.json").write_text(json.dumps(
            {g: {str(s): m for s, m in v.items()} for g, v in sensitivity.items()}, indent=2))
        sensitivity_plot(sensitivity, out_dir / "sensitivity.png", title)
    (out_dir / "report.html").write_text(
        render(payload, title, plots, extra_images=[out_dir / "sensitivity.png"]))
    return payload
