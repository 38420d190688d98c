"""The click-by-click replay of test users, and the harness on it."""

from pathlib import Path

import numpy as np
import pytest

from ccrec.config import load
from ccrec.data.prepare import PrepareConfig, prepare
from ccrec.data.prepared import load_prepared
from ccrec.data.replay import replay_examples
from ccrec.data.sequences import DAY, SequenceSpec, past_sequences
from ccrec.evaluate import SIMPLE_ROWS, run_evaluation
from ccrec.models.cascade import CascadeConfig

DEBUG = Path(__file__).parents[2] / "ccrec" / "configs" / "debug.yaml"
START = 1_700_000_000


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """60 users, an event every 6 days (each its own CI); the next category follows the
    last one (c → c + 1 mod 4), with a basket of two categories every fourth week."""
    tmp = tmp_path_factory.mktemp("replay")
    rows = []
    for u in range(60):
        for w in range(12):
            c = (u + w) % 4
            rows.append(f"u{u},i{c}{w},c{c},{START + w * 6 * DAY + u},g{u % 3}")
            if w % 4 == 3:
                rows.append(f"u{u},j{w},c{(c + 2) % 4},{START + w * 6 * DAY + u},g{u % 3}")
    path = tmp / "events.csv"
    path.write_text("user_id,item_id,category_id,timestamp,feature_group\n"
                    + "\n".join(rows) + "\n")
    config = PrepareConfig(cutoff_mode="per_user", future_fraction=0.4, test_fraction=0.4,
                           max_origins_per_user=6)
    return load_prepared(prepare(f"events:{path}", config, out_dir=tmp / "p"))


def test_replay_points_follow_each_new_ci_with_the_streams_features(prepared):
    frame = replay_examples(prepared, max_points_per_user=3)
    test = prepared.examples[prepared.examples["split"].isin(["warm_test", "cold_test"])]
    assert set(frame["user"]) == set(test["user"])
    assert frame.groupby("user").size().max() == 3
    assert (frame["origin"] >= frame["cutoff"]).all()
    events = prepared.events()
    for row in frame.itertuples():
        user = events[events["user"] == row.user]
        before = user[user["timestamp"] < row.origin]
        at = user[user["timestamp"] == row.origin]
        assert sorted(row.future_categories) == sorted(set(at["category"]))  # the next CI
        if before.empty:
            assert row.num_past_cis == 0
        else:
            want = past_sequences(before, SequenceSpec()).iloc[0]
            assert list(row.past_categories) == list(want["past_categories"])
            assert [list(i) for i in row.past_items] == [list(i) for i in want["past_items"]]
    uncapped = replay_examples(prepared, max_points_per_user=100)
    assert len(uncapped) > len(frame)


def test_harness_scores_warm_cold_and_replay_with_intervals(prepared, tmp_path):
    config = load(CascadeConfig, DEBUG)
    summary = run_evaluation(prepared, config, out_dir=tmp_path / "out", sensitivity_sizes=(),
                             rows=SIMPLE_ROWS, json_path=tmp_path / "r.json")
    report = summary["report"]
    assert set(report["n"]) == {"warm", "cold", "replay"}
    assert report["n"]["replay"] == report["n"]["warm"] + report["n"]["cold"]
    assert report["points"]["replay"] > report["n"]["replay"]
    assert list(report["replay"]) == list(SIMPLE_ROWS)
    # the next category follows the last one: the Markov chain learns it, Popularity cannot
    markov, pop = report["replay"]["Markov"], report["replay"]["Popularity"]
    assert markov["HR@1"] > pop["HR@1"] and markov["HR@1_ci"][0] > pop["HR@1_ci"][1]
    assert report["best"]["replay"]["HR@1"]["row"] in ("Markov", "TIFU-KNN")
    assert report["protocol"] == {"future": "cis:3", "max_past": 10}
    assert np.isfinite(markov["MRR"])
