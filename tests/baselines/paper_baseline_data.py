"""Synthetic users for the paper-baseline tests (VAERec, MeLU, TIGER).

Each user has 1–3 distinct past categories, two user-feature columns and
random items; their future categories follow one deterministic rule:

* ``past``: the image of each past category under a fixed permutation σ;
* ``features``: one category determined by f_t only (the past is noise);
* ``repeat``: the past categories themselves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ccrec.data.tables import UserTable
from ccrec.metrics import ranking_metrics

NUM_CATEGORIES = 12
CARDINALITIES = [4, 5]  # f_t columns, index 0 = unknown
MAX_PAST = 4
PROFILE_DIM = 8


def make_table(n: int, rule: str, seed: int) -> UserTable:
    """A :class:`UserTable` of ``n`` synthetic users following ``rule``."""
    rng = np.random.default_rng(seed)
    sigma = np.random.default_rng(123).permutation(NUM_CATEGORIES) + 1  # σ(c) = sigma[c-1]
    rows = []
    for user in range(n):
        past = rng.choice(np.arange(1, NUM_CATEGORIES + 1), rng.integers(1, 4), replace=False)
        feats = np.array([rng.integers(1, CARDINALITIES[0]), rng.integers(1, CARDINALITIES[1])])
        if rule == "past":
            future = sigma[past - 1]
        elif rule == "features":
            future = np.array([1 + (feats[0] * 5 + feats[1] * 3) % NUM_CATEGORIES])
        elif rule == "repeat":
            future = past
        else:
            raise ValueError(rule)
        rows.append({
            "user": user,
            "past_categories": past,
            "past_items": [rng.integers(1, 20, 2) for _ in past],
            "user_features": feats,
            "future_categories": np.unique(future),
        })
    return UserTable(pd.DataFrame(rows), NUM_CATEGORIES, MAX_PAST, PROFILE_DIM)


def scores_of(model, table: UserTable) -> torch.Tensor:
    """[N, C+1] scores of every user of ``table``."""
    return model.score(table.batch(np.arange(len(table))))


def hit_metrics(scores: torch.Tensor, table: UserTable) -> dict[str, float]:
    """ccrec.metrics of the top-5 categories (padding column excluded)."""
    ranked = scores[:, 1:].topk(5, -1).indices + 1
    return ranking_metrics(ranked.numpy(), table.future)


def random_hit_metrics(table: UserTable, seed: int = 0) -> dict[str, float]:
    """The metrics of a random ranking (the bar every baseline must clear)."""
    gen = torch.Generator().manual_seed(seed)
    return hit_metrics(torch.rand(len(table), NUM_CATEGORIES + 1, generator=gen), table)


def check_scores(scores: torch.Tensor, n: int) -> None:
    """Shape [n, C+1], finite, and padding strictly below every category."""
    assert scores.shape == (n, NUM_CATEGORIES + 1)
    assert torch.isfinite(scores).all()
    assert (scores[:, 0:1] < scores[:, 1:]).all()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Train with one intra-op thread: on a shared 2-core machine, far faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
