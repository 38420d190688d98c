"""A prepared data set as a click stream (streaming.events.dataset_events): the oldest or
the newest events in time order, optionally re-timed to end at a given moment."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from ccrec.data.adapters import load_complete_journey
from ccrec.data.prepare import prepare
from ccrec.data.prepared import load_prepared
from streaming.events import dataset_events


def _epochs(events: list[dict]) -> np.ndarray:
    return np.array([datetime.fromisoformat(e["timestamp"]).timestamp() for e in events])


def test_the_newest_events_re_timed_keep_their_order_and_gaps(tmp_path):
    raw = load_complete_journey(Path(__file__).parents[1] / "fixtures" / "complete-journey")
    prepared = load_prepared(prepare("complete-journey", raw=raw, out_dir=tmp_path / "cj"))
    times = np.sort(prepared.events()["timestamp"].to_numpy())
    everything = list(dataset_events(prepared.path))
    assert len(everything) == len(times) and (_epochs(everything) == times).all()

    oldest = list(dataset_events(prepared.path, 100))
    newest = list(dataset_events(prepared.path, 100, newest=True))
    assert oldest == everything[:100] and newest == everything[-100:]
    assert list(dataset_events(prepared.path, 10**9, newest=True)) == everything

    end = 1_900_000_000
    moved = list(dataset_events(prepared.path, 100, newest=True, end=end))
    shifted = _epochs(moved)
    assert shifted[-1] == end and (np.diff(shifted) == np.diff(times[-100:])).all()
    # the same events (ids, users, items, categories), only later
    assert [{**e, "timestamp": None} for e in moved] == [{**e, "timestamp": None} for e in newest]
