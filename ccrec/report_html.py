"""The one-page HTML report: every table and plot of a results directory.

``report.html`` needs nothing but itself: the plots are embedded as base64
PNG data URIs, the style is inline, and there is no script. It shows the
protocol, n per test group, each group's table (value and 95 % bootstrap
interval; bold = significantly best), CCRec against the best other row
(paired bootstrap), the plots, and the secondary (``future: all``) tables
when the payload carries them.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ccrec.metrics import COLUMNS

#: The comparisons spelled out under each table.
KEY_METRICS = ("HR@1", "Precision@3", "MRR")
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:12px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
tr.ccrec td{background:#fde8e8}
td.best{font-weight:bold}
small{color:#666}
img{max-width:100%;border:1px solid #eee}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _cell(row: Mapping[str, Any], metric: str) -> str:
    value = row.get(metric, float("nan"))
    if value is None or np.isnan(value):
        return "–"
    lo, hi = row[f"{metric}_ci"]
    return f"{value:.3f} <small>[{lo:.3f}, {hi:.3f}]</small>"


def _size(payload: Mapping[str, Any], group: str) -> str:
    n, points = payload["n"][group], payload.get("points", {}).get(group, payload["n"][group])
    return f"n = {n} users" + (f", {points} points" if points != n else "")


def group_table(payload: Mapping[str, Any], group: str,
                columns: Sequence[str] = COLUMNS) -> str:
    """One group's rows × metrics; the significantly best cell of a column in bold."""
    best = payload.get("best", {}).get(group, {})
    head = "".join(f"<th>{_esc(m)}</th>" for m in columns)
    lines = [f"<table><tr><th>row</th>{head}</tr>"]
    for name, row in payload[group].items():
        cells = []
        for metric in columns:
            top = best.get(metric, {})
            bold = top.get("row") == name and top.get("significant")
            cells.append(f"<td{' class=best' if bold else ''}>{_cell(row, metric)}</td>")
        cls = " class=ccrec" if name == "CCRec" else ""
        lines.append(f"<tr{cls}><td>{_esc(name)}</td>{''.join(cells)}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def significance_line(payload: Mapping[str, Any], group: str) -> str:
    """CCRec against the best other row on the key metrics, as one sentence."""
    sig = payload.get("significance", {}).get(group)
    if not sig:
        return ""
    parts = []
    for metric in KEY_METRICS:
        s = sig["by_metric"].get(metric)
        if s is None:
            continue
        lo, hi = s["diff_ci"]
        verdict = ("significantly better" if s["p"] < 0.05 and s["diff"] > 0 else
                   "significantly worse" if s["p"] < 0.05 else "not significantly different")
        parts.append(f"{_esc(metric)} vs {_esc(s['best_other'])}: Δ = {s['diff']:+.3f} "
                     f"[{lo:+.3f}, {hi:+.3f}], p = {s['p']:.3g} ({verdict})")
    return "<p>CCRec against the best other row (paired bootstrap): " + "; ".join(parts) + "</p>"


def _image(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_esc(Path(path).stem)}" src="data:image/png;base64,{data}">'


def _section(payload: Mapping[str, Any], plots: Mapping[str, Path], level: str) -> list[str]:
    out = []
    for group in payload["n"]:
        out += [f"<{level}>{_esc(group)} <small>({_size(payload, group)})</small></{level}>",
                group_table(payload, group), significance_line(payload, group)]
        if group in plots and Path(plots[group]).exists():
            out.append(_image(plots[group]))
    return out


def render(payload: Mapping[str, Any], title: str, plots: Mapping[str, Path] | None = None,
           extra_images: Sequence[Path] = ()) -> str:
    """The report page of a results payload (:func:`ccrec.report.build_report`)."""
    protocol = payload.get("protocol") or {}
    boot = payload.get("bootstrap", {})
    parts = [
        "<!doctype html><html><head><meta charset=utf-8>",
        f"<title>{_esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f"<p>Task: future <code>{_esc(protocol.get('future', '?'))}</code>, max_past "
        f"{_esc(protocol.get('max_past', '?'))}. Test users: "
        + ", ".join(f"{_esc(g)} {_size(payload, g)}" for g in payload["n"])
        + f". Cells: value [95 % bootstrap interval over users, {_esc(boot.get('draws', '?'))} "
        "resamples]; <b>bold</b> = best and significantly better than the runner-up "
        "(paired bootstrap, p &lt; 0.05).</p>",
    ]
    parts += _section(payload, plots or {}, "h2")
    secondary = payload.get("secondary")
    if secondary:
        parts.append("<h2>Secondary task: future <code>"
                     f"{_esc(secondary.get('protocol', {}).get('future', '?'))}</code></h2>")
        parts += _section(secondary, {}, "h3")
    parts += [_image(p) for p in extra_images if Path(p).exists()]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"
