"""Which moments each kind of user is seen at: hand-computed cases."""

import pandas as pd
import pytest

from ccrec.data.horizon import category_interactions
from ccrec.data.origins import newcomer_origins, replay_origins, rolling_origins
from ccrec.data.sequences import DAY

# user 0's CIs start at 0, 1d, 3d (two: a basket), 4d and 10d: five boundaries
EVENTS = pd.DataFrame(
    [(0, 1, 1, 0), (0, 2, 2, DAY), (0, 3, 1, 2 * DAY), (0, 4, 3, 3 * DAY), (0, 5, 4, 3 * DAY),
     (0, 6, 5, 4 * DAY), (0, 7, 2, 10 * DAY), (1, 8, 1, 7 * DAY)],
    columns=["user", "item", "category", "timestamp"])


@pytest.fixture
def cis():
    return category_interactions(EVENTS, 5 * DAY)


def origins(frame, user=0):
    return frame.loc[frame["user"] == user, "origin"].tolist()


def test_rolling_origins_are_boundaries_before_the_cutoff_and_the_cutoff(cis):
    cutoff = pd.Series({0: 5 * DAY, 1: 8 * DAY})
    assert origins(rolling_origins(cis, cutoff, 10)) == [0, DAY, 3 * DAY, 4 * DAY, 5 * DAY]
    assert origins(rolling_origins(cis, cutoff, 3)) == [3 * DAY, 4 * DAY, 5 * DAY]
    assert origins(rolling_origins(cis, cutoff, 1)) == [5 * DAY]
    assert origins(rolling_origins(cis, cutoff, 10), user=1) == [7 * DAY, 8 * DAY]


def test_a_cutoff_on_a_boundary_is_one_origin_and_nothing_after_it(cis):
    rolled = rolling_origins(cis, pd.Series({0: 4 * DAY}), 10)
    assert origins(rolled) == [0, DAY, 3 * DAY, 4 * DAY]  # 10d is after the cutoff
    with pytest.raises(ValueError, match="at least 1"):
        rolling_origins(cis, pd.Series({0: 4 * DAY}), 0)


@pytest.mark.parametrize(("known", "expected"), [
    (0, 0), (1, DAY), (2, 3 * DAY), (3, 3 * DAY),  # the basket at 3d brings 2 → 4 known
    (4, 4 * DAY), (5, 5 * DAY), (9, 5 * DAY),  # 5 CIs before the cutoff: the cutoff itself
])
def test_newcomer_origin_is_the_latest_moment_with_at_most_k_known(cis, known, expected):
    got = newcomer_origins(cis, pd.Series({0: 5 * DAY}), pd.Series({0: known}))
    assert got.to_dict() == {0: expected}


def test_replay_points_are_the_boundaries_from_the_cutoff_on(cis):
    cutoff = pd.Series({0: 3 * DAY})
    assert origins(replay_origins(cis, cutoff, 10)) == [3 * DAY, 4 * DAY, 10 * DAY]
    assert origins(replay_origins(cis, cutoff, 2)) == [3 * DAY, 4 * DAY]
    assert replay_origins(cis, pd.Series({1: 8 * DAY}), 5).empty
