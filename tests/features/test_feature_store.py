"""The Feast repository: programmatic apply, the feast CLI, online reads, point-in-time reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from ccrec.data.sequences import SequenceSpec, past_sequences
from features import definitions as d
from features.store import (
    FEATURES_DIR,
    SEQUENCE_FEATURES,
    historical_features,
    open_store,
    push_rows,
    read_state,
    read_user_features,
    sequence_columns,
    split_items,
)


def _rows(events: pd.DataFrame, names: dict[int, str], at: int) -> pd.DataFrame:
    """The feature rows the stream would push for the events up to ``at``."""
    past = past_sequences(events[events["timestamp"] <= at], SequenceSpec(max_past=3))
    rows = sequence_columns(past)
    rows.insert(0, d.USER_ID, [names[u] for u in rows.pop("user")])
    for name in (d.LOG_ITEMS, d.LOG_CATEGORIES, d.LOG_TIMESTAMPS):
        rows[name] = [[1]] * len(rows)
    rows[d.LOG_EVENT_IDS] = [["x"]] * len(rows)
    rows[d.APPLIED_PARTITION] = 0
    rows[d.APPLIED_OFFSET] = 0
    rows[d.EVENT_TIMESTAMP] = pd.to_datetime(rows[d.LAST_TIMESTAMP], unit="s", utc=True)
    rows[d.CREATED] = pd.Timestamp.now(tz="UTC")
    return rows


EVENTS = pd.DataFrame({
    "user": [0, 0, 0, 1, 1, 0],
    "item": [1, 2, 3, 4, 5, 6],
    "category": [1, 1, 2, 3, 3, 1],
    "timestamp": [100, 200, 300, 150, 10 * 86_400, 20 * 86_400],
})
NAMES = {0: "alice", 1: "bob"}


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    project = f"t_{uuid.uuid4().hex[:10]}"
    store = open_store(tmp_path, request.param, project=project)
    yield store
    store.teardown()


def test_online_write_and_read(store) -> None:
    push_rows(store, d.user_category_sequence_push.name, _rows(EVENTS, NAMES, 10**9))
    now = pd.Timestamp.now(tz="UTC")
    push_rows(store, d.user_profile_push.name, pd.DataFrame(
        {d.USER_ID: ["alice"], d.USER_FEATURES: [[2, 1]], d.EVENT_TIMESTAMP: now, d.CREATED: now}))
    push_rows(store, d.category_popularity_push.name, pd.DataFrame(
        {d.SCOPE: [d.GLOBAL_SCOPE], d.POPULAR_CATEGORIES: [[1, 3, 2]],
         d.POPULAR_COUNTS: [[3, 2, 1]], d.EVENT_TIMESTAMP: now, d.CREATED: now}))
    got = read_user_features(store, ["alice", "bob", "nobody"])
    assert got["alice"]["past_categories"] == [1, 2, 1]
    assert got["alice"]["past_items"] == [[1, 2], [3], [6]]
    assert got["alice"]["user_features"] == [2, 1]
    assert got["bob"]["past_items"] == [[4], [5]]
    assert got["bob"]["num_past_events"] == 2
    assert got["nobody"]["past_categories"] == [] and got["nobody"]["num_past_events"] == 0
    assert got["nobody"]["popular_categories"] == [1, 3, 2]
    state = read_state(store, ["alice"])
    assert state[d.APPLIED_OFFSET] == [0]


def test_historical_features_are_point_in_time(tmp_path) -> None:
    store = open_store(tmp_path)
    for at in sorted(EVENTS["timestamp"]):  # the stream pushes the users an event touches
        rows = _rows(EVENTS, NAMES, at)
        push_rows(store, d.user_category_sequence_push.name, rows[rows[d.LAST_TIMESTAMP] == at])
    cutoffs = [100, 201, 301, 20 * 86_400, 20 * 86_400 + 1, 151, 10 * 86_400 + 1]
    users = ["alice"] * 5 + ["bob"] * 2
    got = historical_features(store, users, cutoffs)
    for user, cutoff, (_, row) in zip(users, cutoffs, got.iterrows(), strict=True):
        code = {v: k for k, v in NAMES.items()}[user]
        before = EVENTS[(EVENTS["user"] == code) & (EVENTS["timestamp"] < cutoff)]
        if before.empty:
            assert row[d.PAST_CATEGORIES] == [] and row[d.NUM_PAST_EVENTS] == 0
            continue
        want = sequence_columns(past_sequences(before, SequenceSpec(max_past=3))).iloc[0]
        for name in SEQUENCE_FEATURES:
            assert list(row[name]) == list(want[name]) if isinstance(want[name], list) \
                else row[name] == want[name], (user, cutoff, name)


def test_split_items() -> None:
    assert split_items([1, 2, 3], [2, 1]) == [[1, 2], [3]]
    assert split_items(None, None) == []


def test_feast_cli_applies_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "features"
    shutil.copytree(FEATURES_DIR, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    feast = Path(sys.executable).parent / "feast"
    done = subprocess.run([str(feast), "-c", str(repo), "apply"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    registered = open_store(repo, apply=False).list_feature_views()
    assert {v.name for v in registered} == {
        "user_category_sequence", "user_profile", "category_popularity"}
