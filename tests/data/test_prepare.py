import json

import numpy as np
import pandas as pd
import pytest

from ccrec.data.adapters import load_complete_journey, load_events_file
from ccrec.data.prepare import PrepareConfig, PrepareError, prepare
from ccrec.data.prepared import load_prepared
from ccrec.data.sequences import DAY
from ccrec.data.stats import table2
from ccrec.schema import EventValidationError

CJ_CONFIG = PrepareConfig(cutoff_mode="global", cutoff="2017-09-01", future="days:120",
                          test_fraction=0.3)


@pytest.fixture
def cj_raw(cj_fixture_dir):
    return load_complete_journey(cj_fixture_dir)


def test_complete_journey_adapter_on_fixture(cj_raw, cj_fixture_dir):
    assert set(cj_raw.events.columns) >= {"user_id", "item_id", "category_id", "timestamp"}
    assert cj_raw.events["event_type"].eq("purchase").all()
    assert cj_raw.user_features.shape[1] == 7
    coarse = load_complete_journey(cj_fixture_dir, category_level="department")
    assert coarse.events["category_id"].nunique() < cj_raw.events["category_id"].nunique()
    with pytest.raises(EventValidationError, match="unknown category level 'aisle'"):
        load_complete_journey(cj_fixture_dir, category_level="aisle")


def test_prepare_writes_vocab_and_examples(cj_raw, tmp_path):
    out = prepare("complete-journey", CJ_CONFIG, raw=cj_raw, out_dir=tmp_path / "cj")
    data = load_prepared(out)
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["categories"][0] == "<pad>" and data.num_categories == len(vocab["categories"]) - 1
    assert set(data.examples["split"]) <= {"train", "valid", "warm_test", "cold_test"}
    lengths = data.examples["past_categories"].map(len)
    assert lengths.between(0, 10).all()
    # empty pasts: a training user's first boundary, and newcomers with 0 known CIs
    assert set(data.examples.loc[lengths == 0, "split"]) == {"train", "cold_test"}
    assert data.examples["future_categories"].map(len).ge(1).all()
    assert data.split("cold_test")["num_past_cis"].le(2).all()
    assert data.split("warm_test")["num_past_cis"].gt(2).all()
    assert not data.examples.duplicated(["user", "origin"]).any()
    assert data.examples.groupby("user")["split"].nunique().eq(1).all()
    rows = table2(data)
    assert rows["train"]["users"] + rows["warm_test"]["users"] + rows["cold_test"]["users"] == (
        data.examples["user"].nunique())
    assert rows["train"]["examples"] + rows["warm_test"]["examples"] + rows["cold_test"][
        "examples"] == len(data.examples)


def test_no_event_after_the_cutoff_reaches_a_past_feature(cj_raw, tmp_path):
    data = load_prepared(prepare("complete-journey", CJ_CONFIG, raw=cj_raw, out_dir=tmp_path / "a"))
    events = data.events()
    ex = data.examples
    assert (ex["last_timestamp"] < ex["origin"]).all()
    assert (ex["origin"] <= ex["cutoff"]).all()  # leakage rule: no origin after the cutoff
    assert (ex.loc[ex["split"] != "train", "origin"] == ex.loc[ex["split"] != "train",
                                                               "cutoff"]).all()
    assert all((np.asarray(s) < c).all() for s, c in zip(ex["past_starts"], ex["origin"],
                                                          strict=True))
    # every past item was bought by that user before the origin; the future is the horizon's
    by_user = events.groupby("user")
    for row in ex.itertuples():
        user_events = by_user.get_group(row.user)
        before = set(user_events.loc[user_events["timestamp"] < row.origin, "item"])
        assert {i for items in row.past_items for i in items} <= before
        after = user_events[(user_events["timestamp"] >= row.origin)
                            & (user_events["timestamp"] < row.origin + 120 * DAY)]
        assert set(row.future_categories) == set(after["category"])


def test_same_seed_same_splits_other_seed_other_splits(cj_raw, tmp_path):
    def splits(seed, name):
        config = PrepareConfig(**{**CJ_CONFIG.__dict__, "seed": seed})
        out = prepare("complete-journey", config, raw=cj_raw, out_dir=tmp_path / name)
        return load_prepared(out).examples[["user", "split"]]

    first, again, other = splits(0, "a"), splits(0, "b"), splits(1, "c")
    pd.testing.assert_frame_equal(first, again)
    assert not first["split"].equals(other["split"])


def test_per_user_cutoff_puts_the_last_fifth_in_the_future(tmp_path):
    path = tmp_path / "events.csv"
    rows = [f"u{u},i{i},c{(i + u) % 4},{1_700_000_000 + i * 7 * DAY}" for u in range(5)
            for i in range(10)]
    path.write_text("user_id,item_id,category_id,timestamp\n" + "\n".join(rows) + "\n")
    config = PrepareConfig(cutoff_mode="per_user", future_fraction=0.2, future="all",
                           test_fraction=0.0, max_origins_per_user=1)
    data = load_prepared(prepare(f"events:{path}", config, out_dir=tmp_path / "p"))
    # every event is its own CI (7 days apart): 10 boundaries, the last 2 in the future
    assert data.examples["num_past_events"].eq(8).all()
    assert data.examples["future_categories"].map(len).eq(2).all()


def test_failed_prepare_leaves_nothing_behind(cj_raw, tmp_path):
    late = PrepareConfig(cutoff_mode="global", cutoff="2030-01-01")
    with pytest.raises(PrepareError, match="no user has both past and future"):
        prepare("complete-journey", late, raw=cj_raw, out_dir=tmp_path / "never")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("user_id,item_id,timestamp\nu,i,1\n", "missing column"),
        ("user_id,item_id,category_id,timestamp\nu,i,c,1\nu,i,c,soon\n",
         "row 1, field 'timestamp'"),
    ],
)
def test_bad_events_file_gives_one_clear_message(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(EventValidationError, match=message) as info:
        load_events_file(path)
    assert str(path) in str(info.value)


def test_events_file_user_features_become_f_t(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        "user_id,item_id,category_id,timestamp,feature_age\n"
        "u1,i1,c1,10,young\nu1,i2,c2,20,adult\nu2,i1,c1,5,\n"
    )
    raw = load_events_file(path)
    assert raw.user_features.loc["u1", "age"] == "adult"
    assert raw.user_features.loc["u2", "age"] == ""


def _weekly_events(path, users=40, weeks=12):
    """Every user: one event a week (each its own CI), category (week + user) mod 5."""
    rows = [f"u{u},i{w},c{(w + u) % 5},{1_700_000_000 + w * 7 * DAY + u}"
            for u in range(users) for w in range(weeks)]
    path.write_text("user_id,item_id,category_id,timestamp\n" + "\n".join(rows) + "\n")
    return path


def test_rolling_origins_short_horizon_and_newcomers(tmp_path):
    events = _weekly_events(tmp_path / "weekly.csv")
    config = PrepareConfig(cutoff_mode="per_user", future_fraction=0.25, future="cis:3",
                           max_origins_per_user=4, test_fraction=0.5, cold_max_cis=2, seed=3)
    data = load_prepared(prepare(f"events:{events}", config, out_dir=tmp_path / "p"))
    ex = data.examples
    code = {name: i + 1 for i, name in enumerate(data.vocab["categories"][1:])}
    # 12 boundaries, the last 3 after the cutoff: the cutoff is week 9's event
    for row in ex.itertuples():
        user = int(data.vocab["users"][row.user][1:])
        week = (row.origin - 1_700_000_000 - user) // (7 * DAY)
        want = [code[f"c{(w + user) % 5}"] for w in range(week, min(week + 3, 12))]
        assert list(row.future_categories) == list(dict.fromkeys(want)), row
        assert row.num_past_cis == week
    train = ex[ex["split"] == "train"]
    assert train.groupby("user").size().eq(4).all()  # weeks 6..9: the cap keeps the latest
    assert (train.groupby("user")["origin"].max() == train.groupby("user")["cutoff"].max()).all()
    assert data.meta["split_examples"]["train"] == 4 * data.meta["split_users"]["train"]
    assert data.split("warm_test")["num_past_cis"].eq(9).all()
    cold = data.split("cold_test")["num_past_cis"]
    assert set(cold) == {0, 1, 2}
    assert data.meta["protocol"] == {"future": "cis:3", "max_past": 10}
