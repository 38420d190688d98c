"""Popularity and Last-category on hand-made users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ccrec.baselines.popularity import LastCategory, Popularity
from ccrec.data.tables import UserTable
from ccrec.metrics import evaluate_recommender


def _users(pasts: list[list[int]], futures: list[list[int]]) -> UserTable:
    frame = pd.DataFrame({
        "user": range(len(pasts)),
        "past_categories": [np.array(p) for p in pasts],
        "past_starts": [np.arange(len(p)) for p in pasts],
        "past_items": [[np.array([c]) for c in p] for p in pasts],
        "user_features": [np.array([1])] * len(pasts),
        "future_categories": [np.array(f) for f in futures],
    })
    return UserTable(frame, num_categories=4, max_past=3, profile_dim=4)


# category 2 is in 3 of 5 future slots of the training users, category 3 in 2
TRAIN = _users([[1], [1], [4], [4]], [[2], [2, 3], [3], [2]])


def test_popularity_ranks_by_share_of_training_futures():
    pop = Popularity(4)
    pop.fit(TRAIN)
    assert torch.allclose(pop.counts, torch.tensor([0.0, 0.0, 0.6, 0.4, 0.0]))
    test = _users([[1], [1], [1]], [[2], [3], [1, 4]])
    metrics = evaluate_recommender(pop, test)
    # everyone gets category 2 first: one hit of three users, four future categories
    assert metrics["HR@1"] == pytest.approx(1 / 3)
    assert metrics["Precision@1"] == pytest.approx(1 / 3)
    assert metrics["Recall@1"] == pytest.approx(1 / 4)


def test_last_category_puts_the_most_recent_past_first():
    last = LastCategory(4)
    last.fit(TRAIN)
    scores = last.score(_users([[1, 3]], [[2]]).batch(np.arange(1)))
    # past slot j of k = 3 scores 1 + (j + 1) / 3; the rest keep their popularity
    assert torch.allclose(scores[0], torch.tensor([-1.0, 4 / 3, 0.6, 5 / 3, 0.0]))
