"""Examples at many origins equal the stream's features at each of them."""

import numpy as np
import pandas as pd
import pytest

from ccrec.data.examples import examples_at, pasts_at
from ccrec.data.horizon import Horizon, category_interactions
from ccrec.data.sequences import DAY, SequenceSpec, past_sequences


def random_events(seed, users=6, per_user=40):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        t = np.sort(rng.integers(0, 60 * DAY, per_user))
        t[5:8] = t[5]  # a basket: several events at one moment
        for j, ts in enumerate(t):
            rows.append((u, int(rng.integers(1, 15)), int(rng.integers(1, 5)), int(ts) + j % 2))
    return pd.DataFrame(rows, columns=["user", "item", "category", "timestamp"])


@pytest.mark.parametrize("spec", [SequenceSpec(max_past=4),
                                  SequenceSpec(max_past=3, max_events=7, horizon_days=20.0)])
@pytest.mark.parametrize("chunk", [1, 10**6])
def test_pasts_at_many_origins_equal_past_sequences_on_the_events_before(spec, chunk):
    events = random_events(0)
    rng = np.random.default_rng(1)
    user = np.repeat(np.arange(6), 5)
    origin = rng.integers(-DAY, 70 * DAY, len(user))
    origin[0] = events.loc[events["user"] == 0, "timestamp"].iloc[7]  # exactly at an event
    got = pasts_at(events, user, origin, spec, chunk_events=chunk)
    assert got["user"].tolist() == user.tolist()
    for i, (u, o) in enumerate(zip(user, origin, strict=True)):
        before = events[(events["user"] == u) & (events["timestamp"] < o)]
        if before.empty:
            assert got.loc[i, "num_past_cis"] == 0 and len(got.loc[i, "past_categories"]) == 0
            assert got.loc[i, "last_timestamp"] == -1
            continue
        want = past_sequences(before, spec).iloc[0]
        row = got.iloc[i]
        for column in ("past_categories", "past_starts"):
            assert list(row[column]) == list(want[column]), (i, column)
        assert [list(x) for x in row["past_items"]] == [list(x) for x in want["past_items"]]
        for column in ("num_past_events", "num_past_cis", "num_past_categories",
                       "last_timestamp"):
            assert row[column] == want[column], (i, column)


def test_examples_at_drops_origins_without_a_future_and_sorts():
    events = pd.DataFrame([(0, 1, 1, 0), (0, 2, 2, 10 * DAY), (1, 3, 3, 0), (1, 4, 1, DAY)],
                          columns=["user", "item", "category", "timestamp"])
    cis = category_interactions(events, 5 * DAY)
    features = np.array([[1], [2]])
    frame = examples_at(events, cis, features, np.array([1, 0, 0]),
                        np.array([DAY, 20 * DAY, 5 * DAY]), SequenceSpec(), Horizon.parse("cis:1"))
    # user 0 has no CI after 20d; rows come sorted by (user, origin)
    assert frame[["user", "origin"]].values.tolist() == [[0, 5 * DAY], [1, DAY]]
    assert [f.tolist() for f in frame["future_categories"]] == [[2], [1]]
    assert [p.tolist() for p in frame["past_categories"]] == [[1], [3]]
    assert frame.loc[1, "user_features"].tolist() == [2]
    frame = examples_at(events, cis, features, np.array([0, 0]), np.array([5 * DAY, 0]),
                        SequenceSpec(), Horizon.parse("cis:1"))
    assert frame["origin"].tolist() == [0, 5 * DAY]
    assert frame["num_past_cis"].tolist() == [0, 1]  # a newcomer: no past, a future
