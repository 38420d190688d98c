"""Personal-frequency, Markov and TIFU-KNN on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ccrec.baselines.frequency import PersonalFrequency
from ccrec.baselines.markov import Markov
from ccrec.baselines.selection import choose
from ccrec.baselines.tifuknn import TIFUKNN, TIFUConfig, history_vectors
from ccrec.data.tables import UserTable

C = 4


def table(pasts, futures, users=None):
    frame = pd.DataFrame({
        "user": users if users is not None else list(range(len(pasts))),
        "past_categories": [np.asarray(p, np.int64) for p in pasts],
        "past_starts": [np.arange(len(p)) for p in pasts],
        "past_items": [[np.asarray([c], np.int64) for c in p] for p in pasts],
        "user_features": [np.zeros(1, np.int64) for _ in pasts],
        "future_categories": [np.asarray(f, np.int64) for f in futures],
    })
    return UserTable(frame, C, max_past=3, profile_dim=8)


def ranking(model, t):
    scores = model.score(t.batch(np.arange(len(t))))
    scores[:, 0] = -torch.inf
    return scores.argsort(1, descending=True)[:, :C].tolist()


# futures: category 2 twice, 1, 3 and 4 once → Popularity order 2, then 1, 3, 4
TRAIN = table([[1], [1], [2], [3]], [[2], [2, 3], [1], [4]])


def test_personal_frequency_counts_then_popularity():
    model = PersonalFrequency(C)
    model.fit(TRAIN)
    assert ranking(model, table([[3, 4, 3], []], [[1], [1]])) == [[3, 4, 2, 1], [2, 1, 3, 4]]


def test_markov_hand_computed_probabilities():
    model = Markov(C)
    model.fit(TRAIN)
    model.smoothing = 1.0
    # T[1] = {2: 2, 3: 1}; pop = (1, 2, 1, 1) / 5;  P(c|1) = (T[1, c] + pop(c)) / (3 + 1)
    scores = model.score(table([[4, 1]], [[2]]).batch(np.arange(1)))[0]
    assert scores[1:].tolist() == pytest.approx([0.2 / 4, 2.4 / 4, 1.2 / 4, 0.2 / 4])
    # a category never seen as a last one, and no past at all: Popularity
    assert ranking(model, table([[4], []], [[2], [2]])) == [[2, 1, 3, 4], [2, 1, 3, 4]]


def test_markov_chooses_its_smoothing_on_validation():
    model = Markov(C)
    # after 3 the training data says 4; validation users after 3 go to 2 (Popularity's top).
    # P(2|3) = 0.4β / (1 + β) beats P(4|3) = (1 + 0.2β) / (1 + β) once β > 5: the first
    # such candidate, 10, wins (100 ties with it and comes later)
    model.fit(TRAIN, table([[3], [3]], [[2], [2]]))
    assert model.smoothing == 10.0


def test_history_vectors_decay_toward_the_past():
    v = history_vectors(torch.tensor([[1, 2, 1], [3, 0, 0]]), C, decay=0.5)
    # weights 0.25, 0.5, 1 (oldest first): category 1 gets 1.25 of 1.75
    assert v[0].tolist() == pytest.approx([0, 1.25 / 1.75, 0.5 / 1.75, 0, 0])
    assert v[1].tolist() == pytest.approx([0, 0, 0, 1, 0])


def test_tifu_knn_mixes_own_and_nearest_neighbour_vectors():
    model = TIFUKNN(C, TIFUConfig(decay=1.0, neighbours=1, alpha=0.5))
    # neighbours (training users at their last example): user 7 → [1, 2], user 8 → [3]
    model.fit(table([[4], [1, 2], [3]], [[1], [1], [1]], users=[7, 7, 8]))
    scores = model.score(table([[1]], [[2]]).batch(np.arange(1)))[0]
    # own = e1; nearest by cosine is [1, 2] → (e1 + e2) / 2; 0.5·own + 0.5·neighbour
    assert scores[1:].tolist() == pytest.approx([0.75, 0.25, 0, 0], abs=1e-5)


def test_tifu_knn_gives_newcomers_popularity():
    model = TIFUKNN(C)
    model.fit(TRAIN, table([[1], [3]], [[2], [4]]))
    assert ranking(model, table([[]], [[2]]))[0] == [2, 1, 3, 4]  # no past: Popularity


def test_choose_takes_the_best_validation_hit_rate_first_on_ties():
    valid = table([[1], [2]], [[3], [3]])

    class Fixed:
        def __init__(self):
            self.top = 1

        def score(self, batch):
            scores = torch.zeros(len(batch), C + 1)
            scores[:, self.top] = 1.0
            return scores

    model = Fixed()

    def apply(top):
        model.top = top
        return model

    assert choose([1, 3, 2, 3], apply, valid) == 3 and model.top == 3
    assert choose([1, 2], apply, valid) == 1  # a tie: the earlier one
