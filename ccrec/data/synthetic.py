"""A tiny synthetic prepared data set for tests and debug runs (no downloads).

Users have 1..k past category interactions; the future is a deterministic
function of the past (the category after the last one, cyclically), so a
model can fit it exactly. Item i belongs to category ((i - 1) mod C) + 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SPLIT_CYCLE = ("train", "train", "train", "train", "train", "train", "valid", "warm_test")


def write_synthetic(
    path: str | Path,
    *,
    num_users: int = 64,
    num_categories: int = 6,
    num_items: int = 30,
    max_past: int = 5,
    feature_cardinalities: tuple[int, ...] = (3, 4),
    seed: int = 0,
) -> Path:
    """Write a prepared directory (examples, events, vocab, meta) at ``path``."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rows, events = [], []
    items_of = {c: [i for i in range(1, num_items + 1) if (i - 1) % num_categories + 1 == c]
                for c in range(1, num_categories + 1)}
    for u in range(num_users):
        cold = u % 10 == 9
        n = int(rng.integers(1, 3)) if cold else int(rng.integers(1, max_past + 1))
        cats = [int(c) for c in rng.integers(1, num_categories + 1, size=n)]
        items = [sorted({int(x) for x in rng.choice(items_of[c], size=2)}) for c in cats]
        starts = [1_000_000 + 86_400 * 6 * j for j in range(n)]
        future = [cats[-1] % num_categories + 1]
        split = "cold_test" if cold else SPLIT_CYCLE[u % len(SPLIT_CYCLE)]
        feats = [int(rng.integers(1, c)) for c in feature_cardinalities]
        rows.append({
            "user": u, "past_categories": np.asarray(cats, np.int64),
            "past_starts": np.asarray(starts, np.int64),
            "past_items": [np.asarray(i, np.int64) for i in items],
            "num_past_events": sum(len(i) for i in items), "num_past_cis": n,
            "num_past_categories": len(set(cats)), "last_timestamp": starts[-1],
            "future_categories": np.asarray(future, np.int64), "cutoff": starts[-1] + 1,
            "origin": starts[-1] + 1,
            "user_features": np.asarray(feats, np.int64), "split": split,
        })
        for c, its, s in zip(cats, items, starts, strict=True):
            events += [{"user": u, "item": i, "category": c, "timestamp": s} for i in its]
    pd.DataFrame(rows).to_parquet(path / "examples.parquet")
    pd.DataFrame(events).to_parquet(path / "events.parquet")
    vocab = {
        "users": [str(u) for u in range(num_users)],
        "items": ["<pad>"] + [f"i{i}" for i in range(1, num_items + 1)],
        "categories": ["<pad>"] + [f"c{c}" for c in range(1, num_categories + 1)],
        "user_features": {f"f{j}": ["<unk>"] + [f"v{v}" for v in range(1, card)]
                          for j, card in enumerate(feature_cardinalities)},
    }
    (path / "vocab.json").write_text(json.dumps(vocab))
    meta = {"dataset": "synthetic", "name": "synthetic", "num_users": num_users,
            "num_items": num_items, "num_categories": num_categories,
            "config": {"sequence": {"max_past": max_past}}}
    (path / "meta.json").write_text(json.dumps(meta))
    return path
