"""The Feast repository: environments, programmatic apply, the feast CLI, online and
point-in-time reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pandas as pd
import pytest

from ccrec.data.sequences import SEQUENCE_COLUMNS, SequenceSpec, past_sequences
from features import definitions as d
from features.environments import FEATURES_DIR
from features.store import (
    OBJECTS,
    PUSHED,
    SEQUENCE_FEATURES,
    STATE_FEATURES,
    UserFeatureReader,
    historical_features,
    load_config,
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
    rows[d.WORKER_STATE] = [b"state\x00"] * len(rows)
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


def test_objects_are_every_definition_in_order() -> None:
    assert [o.name for o in OBJECTS] == [
        "user", "scope",
        "user_category_sequence_log", "user_category_sequence_push",
        "user_profile_log", "user_profile_push",
        "category_popularity_log", "category_popularity_push",
        "user_category_sequence", "user_profile", "category_popularity",
        "ccrec_v1"]
    assert {source: view.name for source, view in PUSHED.items()} == {
        "user_category_sequence_push": "user_category_sequence",
        "user_profile_push": "user_profile",
        "category_popularity_push": "category_popularity"}
    assert SEQUENCE_FEATURES == (
        d.PAST_CATEGORIES, d.PAST_STARTS, d.PAST_ITEMS_FLAT, d.PAST_ITEM_COUNTS,
        d.NUM_PAST_EVENTS, d.NUM_PAST_CIS, d.NUM_PAST_CATEGORIES, d.LAST_TIMESTAMP)
    assert STATE_FEATURES == (d.WORKER_STATE,)


def test_sequence_feature_names_are_the_batch_columns() -> None:
    """The stream and the batch path name a feature alike (the features equal by construction)."""
    assert {d.PAST_CATEGORIES, d.PAST_STARTS, d.PAST_ITEMS, d.NUM_PAST_EVENTS, d.NUM_PAST_CIS,
            d.NUM_PAST_CATEGORIES, d.LAST_TIMESTAMP} == set(SEQUENCE_COLUMNS) - {"user"}


def test_each_environment_is_its_yaml_on_the_root(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CCREC_REDIS_URL", raising=False)
    sqlite = load_config(tmp_path, "sqlite")
    assert (sqlite.project, sqlite.repo_path, sqlite.online_store.type) == (
        "ccrec", tmp_path.resolve(), "sqlite")
    redis = load_config(tmp_path, "redis", project="p1")
    assert (redis.project, redis.online_store.type, redis.online_store.connection_string) == (
        "p1", "redis", "127.0.0.1:6379")
    assert redis.online_store.skip_dedup and redis.online_store.key_ttl_seconds is None
    assert load_config(tmp_path, "redis", redis_url="h:1").online_store.connection_string == "h:1"
    monkeypatch.setenv("CCREC_REDIS_URL", "h:2,db=3")
    assert load_config(tmp_path, "redis").online_store.connection_string == "h:2,db=3"
    with pytest.raises(ValueError, match="unknown Feast environment 'staging'"):
        load_config(tmp_path, "staging")


def test_production_reads_its_variables(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("FEAST_PROJECT", raising=False)
    monkeypatch.delenv("FEAST_REGISTRY_URL", raising=False)
    monkeypatch.setenv("CCREC_REDIS_URL", "redis:6379,db=0")
    with pytest.raises(ValueError, match="needs the environment variable.*FEAST_PROJECT, "
                                         "FEAST_REGISTRY_URL"):
        load_config(tmp_path, "production")
    monkeypatch.setenv("FEAST_PROJECT", "prod")
    monkeypatch.setenv("FEAST_REGISTRY_URL", "postgresql+psycopg://u:p@db:5432/feast")
    config = load_config(tmp_path, "production")
    assert (config.project, config.registry.registry_type, config.registry.path) == (
        "prod", "sql", "postgresql+psycopg://u:p@db:5432/feast")
    online = config.online_store
    assert (online.type, online.connection_string, online.key_ttl_seconds) == (
        "redis", "redis:6379,db=0", 30 * 86_400)


def test_paths_resolve_under_the_root(tmp_path) -> None:
    store = open_store(tmp_path / "root")
    push_rows(store, d.user_category_sequence_push.name, _rows(EVENTS, NAMES, 10**9))
    data = tmp_path / "root" / "data"
    assert (data / "registry.db").is_file() and (data / "online_store.db").is_file()
    parts = sorted(p.name for p in (data / "offline" / "user_category_sequence").iterdir())
    assert len(parts) == 2 and parts[0] == "part-00000-empty.parquet"


def test_online_write_and_read(store) -> None:
    push_rows(store, d.user_category_sequence_push.name, _rows(EVENTS, NAMES, 10**9))
    now = pd.Timestamp.now(tz="UTC")
    push_rows(store, d.user_profile_push.name, pd.DataFrame(
        {d.USER_ID: ["alice"], d.USER_FEATURES: [[2, 1]], d.EVENT_TIMESTAMP: now, d.CREATED: now}))
    push_rows(store, d.category_popularity_push.name, pd.DataFrame(
        {d.SCOPE: [d.GLOBAL_SCOPE], d.POPULAR_CATEGORIES: [[1, 3, 2]],
         d.POPULAR_COUNTS: [[3, 2, 1]], d.EVENT_TIMESTAMP: now, d.CREATED: now}))
    got = read_user_features(store, ["alice", "bob", "nobody"])
    assert got["alice"] == {
        d.PAST_CATEGORIES: [1, 2, 1], d.PAST_STARTS: [100, 300, 20 * 86_400],
        d.PAST_ITEMS: [[1, 2], [3], [6]], d.USER_FEATURES: [2, 1],
        d.POPULAR_CATEGORIES: [1, 3, 2], d.POPULAR_COUNTS: [3, 2, 1],
        d.NUM_PAST_EVENTS: 4, d.NUM_PAST_CIS: 3, d.NUM_PAST_CATEGORIES: 2,
        d.LAST_TIMESTAMP: 20 * 86_400}
    assert got["bob"][d.PAST_ITEMS] == [[4], [5]] and got["bob"][d.USER_FEATURES] == []
    assert got["bob"][d.NUM_PAST_EVENTS] == 2
    assert got["nobody"] == {
        d.PAST_CATEGORIES: [], d.PAST_STARTS: [], d.PAST_ITEMS: [], d.USER_FEATURES: [],
        d.POPULAR_CATEGORIES: [1, 3, 2], d.POPULAR_COUNTS: [3, 2, 1],
        d.NUM_PAST_EVENTS: 0, d.NUM_PAST_CIS: 0, d.NUM_PAST_CATEGORIES: 0, d.LAST_TIMESTAMP: 0}
    state = read_state(store, ["alice", "nobody"])
    assert state[d.WORKER_STATE] == [b"state\x00", None]
    # The reader reads the online rows itself; Feast's get_online_features gives the same.
    reader = UserFeatureReader(store)
    ours = reader.read(["alice", "bob", "nobody"])
    assert reader.views is not None and ours == got
    reader.views = None
    assert reader.read(["alice", "bob", "nobody"]) == got


def test_historical_features_are_point_in_time(tmp_path) -> None:
    store = open_store(tmp_path)
    for at in sorted(EVENTS["timestamp"]):  # the stream pushes the users an event touches
        rows = _rows(EVENTS, NAMES, at)
        push_rows(store, d.user_category_sequence_push.name, rows[rows[d.LAST_TIMESTAMP] == at])
    cutoffs = [100, 201, 301, 20 * 86_400, 20 * 86_400 + 1, 151, 10 * 86_400 + 1]
    users = ["alice"] * 5 + ["bob"] * 2
    got = historical_features(store, users, cutoffs)
    assert list(got[d.NUM_PAST_EVENTS]) == [0, 2, 3, 3, 4, 1, 2]
    assert list(got["cutoff"]) == cutoffs
    for user, cutoff, (_, row) in zip(users, cutoffs, got.iterrows(), strict=True):
        code = {v: k for k, v in NAMES.items()}[user]
        before = EVENTS[(EVENTS["user"] == code) & (EVENTS["timestamp"] < cutoff)]
        if before.empty:
            assert row[d.PAST_CATEGORIES] == [] and row[d.NUM_PAST_EVENTS] == 0
            continue
        want = sequence_columns(past_sequences(before, SequenceSpec(max_past=3))).iloc[0]
        for name in SEQUENCE_FEATURES:
            got_value = list(row[name]) if isinstance(want[name], list) else row[name]
            assert got_value == want[name], (user, cutoff, name)


def test_split_items() -> None:
    assert split_items([1, 2, 3], [2, 1]) == [[1, 2], [3]]
    assert split_items(None, None) == []


def test_feast_cli_applies_the_repository(tmp_path: Path) -> None:
    """`feast apply` on a copy of features/: the repository is a plain Feast repository."""
    repo = tmp_path / "features"
    shutil.copytree(FEATURES_DIR, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    feast = Path(sys.executable).parent / "feast"
    done = subprocess.run([str(feast), "-c", str(repo), "apply"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    store = open_store(repo, apply=False)
    assert {v.name for v in store.list_feature_views()} == {
        d.user_category_sequence.name, d.user_profile.name, d.category_popularity.name}
    assert [s.name for s in store.list_feature_services()] == [d.ccrec_v1.name]
