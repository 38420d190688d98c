"""The stream state's one stored value, and the bounded cache of states."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from streaming.state import NEVER, StateCache, UserState


def state(offset: int = 7, ids: tuple[str, ...] = ("e-1", "é")) -> UserState:
    return UserState(np.array([3, 4]), np.array([1, 2]), np.array([100, 200]), list(ids),
                     "t-1", 2, offset)


def test_the_state_value_is_its_documented_layout() -> None:
    """Hand-built bytes: header, items, categories, times, id sizes, topic id, ids."""
    want = (struct.pack("<4sIqqII", b"CCS1", 2, 2, 7, 2, 3)
            + struct.pack("<6q", 3, 4, 1, 2, 100, 200) + struct.pack("<2I", 3, 2)
            + b"t-1" + b"e-1" + "é".encode())
    assert state().to_bytes() == want
    back = UserState.from_bytes(want)
    assert (back.items.tolist(), back.categories.tolist(), back.timestamps.tolist()) == (
        [3, 4], [1, 2], [100, 200])
    assert (back.event_ids, back.topic_id, back.partition, back.offset) == (
        ["e-1", "é"], "t-1", 2, 7)


def test_an_empty_state_round_trips() -> None:
    empty = UserState(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), [],
                      "", 0, -1)
    back = UserState.from_bytes(empty.to_bytes())
    assert back.latest == NEVER and back.event_ids == [] and back.offset == -1


def test_other_bytes_are_not_a_state() -> None:
    with pytest.raises(ValueError, match="not a stream worker state"):
        UserState.from_bytes(b"junk" + bytes(40))
    with pytest.raises(ValueError, match="holds"):
        UserState.from_bytes(state().to_bytes() + b"x")


def test_applied_positions_belong_to_one_topic_incarnation() -> None:
    stored = state(offset=7)
    assert stored.applied("t-1", 2, 7) and stored.applied("t-1", 2, 0)
    assert not stored.applied("t-1", 2, 8)
    assert not stored.applied("t-2", 2, 0)  # the topic was recreated: offsets start again
    assert not stored.applied("t-1", 1, 0)


def test_the_cache_keeps_the_most_recently_used() -> None:
    cache = StateCache(capacity=2)
    cache.update({"a": state(1), "b": state(2)})
    assert cache.get("a").offset == 1  # a is now the most recent
    cache.update({"c": state(3)})
    assert "b" not in cache and len(cache) == 2
    cache.update({"a": state(4), "d": state(5)})
    assert cache.get("a").offset == 4 and "c" not in cache and "d" in cache
    cache.clear()
    assert len(cache) == 0 and cache.get("a") is None
