"""The horizon: hand-computed futures for cis:N, days:D and all."""

import numpy as np
import pandas as pd
import pytest

from ccrec.config import ConfigError
from ccrec.data.horizon import Horizon, HorizonError, category_interactions, future_categories_at
from ccrec.data.prepare import PrepareConfig
from ccrec.data.sequences import DAY

# user 0: c1@0, c2@1d, c1@2d (joins c1's CI), c3+c4@3d (a basket), c5@4d, c2@10d (new CI)
# user 1: c9@0 — never mixes with user 0
ROWS = [(0, 1, 1, 0), (0, 2, 2, DAY), (0, 3, 1, 2 * DAY), (0, 4, 3, 3 * DAY),
        (0, 5, 4, 3 * DAY), (0, 6, 5, 4 * DAY), (0, 7, 2, 10 * DAY), (1, 8, 9, 0)]


@pytest.fixture
def events():
    return pd.DataFrame(ROWS, columns=["user", "item", "category", "timestamp"])


def futures(events, horizon, origins, user=0):
    cis = category_interactions(events, 5 * DAY)
    users = np.full(len(origins), user)
    got = future_categories_at(events, cis, users, np.asarray(origins), Horizon.parse(horizon))
    return [f.tolist() for f in got]


def test_category_interactions_of_the_whole_history(events):
    cis = category_interactions(events, 5 * DAY)
    assert cis[cis["user"] == 0][["category", "start"]].values.tolist() == [
        [1, 0], [2, DAY], [3, 3 * DAY], [4, 3 * DAY], [5, 4 * DAY], [2, 10 * DAY]]


def test_first_n_cis_include_the_basket_of_the_nth(events):
    assert futures(events, "cis:1", [0]) == [[1]]
    assert futures(events, "cis:2", [0]) == [[1, 2]]
    assert futures(events, "cis:3", [0]) == [[1, 2, 3, 4]]  # c4 starts with the 3rd CI
    assert futures(events, "cis:10", [4 * DAY]) == [[5, 2]]  # fewer than N left: all of them


def test_a_ci_that_began_before_the_origin_is_past_not_future(events):
    # c1's event at 2d continues the CI that started at 0: the next new CI is the basket
    assert futures(events, "cis:1", [2 * DAY]) == [[3, 4]]
    assert futures(events, "cis:3", [11 * DAY]) == [[]]


def test_days_and_all_count_every_event_in_the_window(events):
    assert futures(events, "days:2", [DAY]) == [[2, 1]]  # c2@1d, c1@2d; c3@3d is out
    assert futures(events, "all", [2 * DAY]) == [[1, 3, 4, 5, 2]]
    assert futures(events, "all", [11 * DAY]) == [[]]
    assert futures(events, "all", [0], user=1) == [[9]]


def test_many_origins_in_one_call_keep_their_order(events):
    assert futures(events, "cis:1", [4 * DAY, 0, DAY]) == [[5], [1], [2]]


@pytest.mark.parametrize("text", ["cis:0", "cis:", "days:0", "days:-1", "next", "cis:2.5"])
def test_bad_horizons_are_refused(text):
    with pytest.raises(HorizonError, match="horizon"):
        Horizon.parse(text)
    with pytest.raises(ConfigError, match="future"):
        PrepareConfig(future=text)


def test_horizon_round_trips():
    assert [str(Horizon.parse(t)) for t in ("cis:3", "days:92", "days:1.5", "all")] == [
        "cis:3", "days:92", "days:1.5", "all"]
