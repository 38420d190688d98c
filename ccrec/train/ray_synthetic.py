"""A tiny seeded prepared data set for Ray tests, tuning smoke runs and benchmarks.

Users have a favourite and a second category, so the next categories are
learnable and HR@1 moves well above chance within a few epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccrec.data.prepare import PrepareConfig, prepare

DAY = 86_400


def synthetic_prepared(out_dir: Path, *, users: int = 400, categories: int = 6,
                       events_per_user: int = 24, seed: int = 0) -> Path:
    """Write an events CSV and prepare it into ``out_dir`` (returned)."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in range(users):
        favourite, second = u % categories, (u * 7 + 1) % categories
        for e in range(events_per_user):
            r = rng.random()
            c = favourite if r < 0.6 else second if r < 0.8 else int(rng.integers(categories))
            item = c * 10 + int(rng.integers(10))
            ts = 1_700_000_000 + e * 6 * DAY + int(rng.integers(DAY))
            rows.append(f"u{u},i{item},c{c},{ts},g{favourite}")
    events = out_dir.parent / f"{out_dir.name}-events.csv"
    events.write_text("user_id,item_id,category_id,timestamp,feature_group\n"
                      + "\n".join(rows) + "\n")
    config = PrepareConfig(cutoff_mode="per_user", future_fraction=0.25, future="all",
                           max_origins_per_user=1, test_fraction=0.1, valid_fraction=0.2)
    return prepare(f"events:{events}", config, out_dir=out_dir)
