"""Training examples from the stream's Feast offline log (streaming.offline).

The Complete Journey fixture goes through the stream's feature updater into a
real Feast store; the examples rebuilt from the store's offline log must be
those ``ccrec data prepare`` builds from the same events, and each example's
features must be what Feast's point-in-time join serves at its origin.
"""

from __future__ import annotations

import dataclasses
import json
import time
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ccrec.data.adapters import load_complete_journey
from ccrec.data.prepare import PrepareConfig, prepare
from ccrec.data.prepared import load_prepared
from features.online import OnlineRows
from features.store import (
    SEQUENCE_FEATURES,
    SEQUENCE_VIEW,
    historical_features,
    load_static_features,
    open_store,
    push_view_rows,
    sequence_columns,
)
from streaming.config import WorkerConfig
from streaming.events import Vocabulary, encode
from streaming.offline import log_events, prepare_from_feast, read_vocab
from streaming.updater import FeatureUpdater

#: The task's horizon (cis:3, the default) with a global cutoff inside the fixture's year.
CONFIG = PrepareConfig(cutoff_mode="global", cutoff="2017-09-01", test_fraction=0.3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    raw = load_complete_journey(Path(__file__).parents[1] / "fixtures" / "complete-journey")
    out = tmp_path_factory.mktemp("offline") / "prepared"
    return raw, prepare("complete-journey", CONFIG, raw=raw, out_dir=out)


def wire(raw_events: pd.DataFrame) -> list[dict]:
    """The source events as the stream's JSON events, in time order."""
    ordered = raw_events.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    return [{"user_id": str(e.user_id), "item_id": str(e.item_id),
             "category_id": str(e.category_id), "event_type": str(e.event_type),
             "timestamp": int(e.timestamp), "event_id": f"e{k}"}
            for k, e in enumerate(ordered.itertuples())]


def stream_events(store, prepared_dir, events: list[dict], batches: list[slice],
                  first_offset: int = 0) -> None:
    """Each batch of events through the stream's updater into the store (online + log);
    the events are the partition's records from ``first_offset`` on."""
    online = OnlineRows(store, store.get_feature_view(SEQUENCE_VIEW))
    config = WorkerConfig(sequence=CONFIG.sequence)
    updater = FeatureUpdater(online, Vocabulary.from_prepared(prepared_dir), config)
    records = [SimpleNamespace(topic="t", partition=0, offset=first_offset + k, value=encode(e),
                               timestamp=time.time() * 1000) for k, e in enumerate(events)]
    for batch in batches:
        result = updater.process(records[batch])
        assert result.applied == len(records[batch]), [r.reason for r in result.rejected]
        push_view_rows(online, result.rows)
        updater.remember(result.states)


def test_examples_from_the_offline_log_equal_the_prepared_ones(prepared, tmp_path):
    raw, prepared_dir = prepared
    events = wire(raw.events)
    store = open_store(tmp_path / "store")
    # micro-batches of 97 events: a user's events of one batch share one log row
    stream_events(store, prepared_dir, events,
                  [slice(i, i + 97) for i in range(0, len(events), 97)])
    load_static_features(store, load_prepared(prepared_dir))

    logged = log_events(store)
    assert len(logged) == len(raw.events)
    # what `ccrec train --source feast` runs: the prepared data set's task, from the log
    from_store = entry_points(group="ccrec.sources")["feast"].load()
    from_log = from_store(prepared_dir, tmp_path / "store", out_dir=tmp_path / "from-feast")
    assert read_vocab(from_log)[1] == "complete-journey"

    expected, got = load_prepared(prepared_dir), load_prepared(from_log)
    assert got.vocab == expected.vocab
    assert len(expected.examples) > 100 and set(expected.examples["split"]) == {
        "train", "valid", "warm_test", "cold_test"}
    pd.testing.assert_frame_equal(got.examples, expected.examples)
    order = ["user", "timestamp", "category", "item"]
    pd.testing.assert_frame_equal(got.events().sort_values(order).reset_index(drop=True),
                                  expected.events().sort_values(order).reset_index(drop=True))


def test_each_example_has_the_features_feast_served_at_its_origin(prepared, tmp_path):
    """Point in time: with one log row per moment, Feast's as-of join at each origin gives
    the example's features exactly; they hold no event at or after the origin."""
    raw, prepared_dir = prepared
    # three households keep the number of pushes (one per moment) small
    households = sorted(raw.events["user_id"].unique())[:3]
    events = wire(raw.events[raw.events["user_id"].isin(households)])
    store = open_store(tmp_path / "store")
    times = np.array([e["timestamp"] for e in events])
    bounds = np.flatnonzero(np.r_[True, times[1:] != times[:-1], True])
    stream_events(store, prepared_dir, events,
            [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)])
    load_static_features(store, load_prepared(prepared_dir))
    # every household a training user: an example at each of its CI boundaries
    everyone = dataclasses.replace(CONFIG, test_fraction=0.0, valid_fraction=0.0)
    examples = load_prepared(prepare_from_feast(store, read_vocab(prepared_dir)[0], everyone,
                                                tmp_path / "from-feast"))
    frame = examples.examples
    assert len(frame) >= 30 and frame["num_past_cis"].nunique() > 5
    users = examples.vocab["users"]
    served = historical_features(store, [users[u] for u in frame["user"]],
                                 frame["origin"].to_numpy())
    expected = sequence_columns(frame)
    for name in SEQUENCE_FEATURES:
        want = [list(map(int, v)) if isinstance(v, list) else int(v) for v in expected[name]]
        have = [list(map(int, v)) if isinstance(v, list) else int(v) for v in served[name]]
        # a newcomer's empty past: Feast has no row yet (0), the example says −1
        if name == "last_timestamp":
            want = [max(v, 0) for v in want]
        assert have == want, name
    # no target leaks into the features: every past event precedes the origin
    assert (frame["last_timestamp"] < frame["origin"]).all()
    assert json.loads((examples.path / "meta.json").read_text())["protocol"]["future"] == "cis:3"


def test_an_empty_log_has_no_events(tmp_path):
    assert log_events(open_store(tmp_path / "store")).empty
