"""Users and checks for the paper-baseline tests (VAERec, MeLU, TIGER).

Each user has 1–3 distinct past categories and two user-feature columns;
their future categories follow one pattern of :mod:`ccrec.data.synthetic`:

* ``past``: the image of each past category under a fixed permutation σ;
* ``features``: one category determined by f_t only (the past is noise);
* ``repeat``: the past categories themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccrec.data.synthetic import (
    FeatureCategory,
    PermutedPast,
    RepeatPast,
    SyntheticConfig,
    generate,
)
from ccrec.data.tables import UserTable
from ccrec.metrics import ranking_metrics

NUM_CATEGORIES = 12
CARDINALITIES = [4, 5]  # f_t columns, index 0 = unknown
MAX_PAST = 4
PROFILE_DIM = 8
PATTERNS = {"past": PermutedPast(), "features": FeatureCategory(), "repeat": RepeatPast()}


def make_table(n: int, rule: str, seed: int) -> UserTable:
    """A :class:`UserTable` of ``n`` synthetic users following ``PATTERNS[rule]``."""
    config = SyntheticConfig(num_users=n, num_categories=NUM_CATEGORIES, num_items=24,
                             max_past=3, distinct_past=True,
                             feature_cardinalities=tuple(CARDINALITIES), cold_every=0,
                             seed=seed)
    examples = generate(config, PATTERNS[rule]).examples
    return UserTable(examples, NUM_CATEGORIES, MAX_PAST, PROFILE_DIM)


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
