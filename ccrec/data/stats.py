"""Data-set statistics in the columns of the paper's Table 2."""

from __future__ import annotations

import numpy as np

from ccrec.data.prepared import PreparedData

TABLE2_SPLITS = ("train", "warm_test", "cold_test")
TABLE2_COLUMNS = (
    "users", "examples", "items", "categories", "past_actions", "past_categories_per_user",
    "future_categories_per_user",
)


def _mean_std(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": 0.0, "std": 0.0}
    return {"mean": round(float(values.mean()), 4), "std": round(float(values.std()), 4)}


def table2(data: PreparedData) -> dict[str, dict]:
    """Per split: #users, #examples (rolling origins of training users included),
    #items, #categories, and mean±std of past actions (events before the
    cutoff), distinct past categories and distinct future categories per user,
    each user at their cutoff. ``train`` includes the validation users."""
    rows = {}
    for split in TABLE2_SPLITS:
        names = ("train", "valid") if split == "train" else (split,)
        examples = data.examples[data.examples["split"].isin(names)]
        frame = examples[examples["origin"] == examples["cutoff"]]
        rows[split] = {
            "users": int(frame["user"].nunique()),
            "examples": int(len(examples)),
            "items": data.num_items,
            "categories": data.num_categories,
            "past_actions": _mean_std(frame["num_past_events"].to_numpy(float)),
            "past_categories_per_user": _mean_std(frame["num_past_categories"].to_numpy(float)),
            "future_categories_per_user": _mean_std(
                frame["future_categories"].map(len).to_numpy(float)
            ),
        }
    return rows


def table2_markdown(name: str, rows: dict[str, dict]) -> str:
    header = "| split | # users | # examples | # items | # categories | # past actions | " \
        "# past categories/user | # future categories/user |"
    lines = [header, "|" + "---|" * 8]
    for split, row in rows.items():
        cells = [f"{name} ({split})", *(str(row[key]) for key in TABLE2_COLUMNS[:4])]
        for key in TABLE2_COLUMNS[4:]:
            cells.append(f"{row[key]['mean']:.2f} ± {row[key]['std']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
