"""The worker's logic without Kafka: validation, idempotency, batch/stream equality."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest
from stream_helpers import SPEC, T0, batch_features, make_events, online_features, worker_config

from ccrec.schema import parse_event
from features.store import open_store, push_rows
from streaming.events import Vocabulary, encode
from streaming.worker import SEQUENCE_PUSH, FeatureUpdater, fast_parse


def records(events: list[dict], start: int = 0, partition: int = 0) -> list[SimpleNamespace]:
    return [SimpleNamespace(topic="t", partition=partition, offset=start + k, value=encode(e),
                            timestamp=time.time() * 1000) for k, e in enumerate(events)]


@pytest.fixture
def updater(tmp_path, vocab_dir) -> FeatureUpdater:
    store = open_store(tmp_path / "store")
    return FeatureUpdater(store, Vocabulary.from_prepared(vocab_dir),
                          worker_config({}, cache_state=False))


def apply(updater: FeatureUpdater, recs) -> object:
    result = updater.process(recs)
    push_rows(updater.store, SEQUENCE_PUSH, result.rows)
    updater.remember(result.states)
    return result


def test_fast_parse_agrees_with_the_schema() -> None:
    for event in make_events(50, 5):
        full = parse_event(encode(event))
        assert fast_parse(encode(event)) == (
            full.user_id, full.item_id, full.category_id, full.epoch_seconds, full.dedup_id)
    odd = [b"{", b"[]", b'{"user_id": 1}', json.dumps({**make_events(1, 1)[0], "x": 1}).encode(),
           json.dumps({**make_events(1, 1)[0], "timestamp": "2024-01-01"}).encode(),
           json.dumps({**make_events(1, 1)[0], "user_id": ""}).encode()]
    for value in odd:
        assert fast_parse(value) is None


def test_stream_equals_batch_in_any_batching(updater) -> None:
    events = make_events(400, 12, seed=3)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, 400), 9, replace=False))
    offset = 0
    for chunk in np.split(np.arange(400), cuts):
        apply(updater, records([events[i] for i in chunk], offset))
        offset += len(chunk)
    want = batch_features(events, SPEC)
    assert online_features(updater.store, list(want)) == want


def test_replayed_offsets_and_event_ids_apply_once(updater) -> None:
    events = make_events(60, 4, seed=1)
    first = apply(updater, records(events))
    assert first.applied == 60
    again = apply(updater, records(events))  # a redelivery after a crash
    assert (again.applied, again.duplicates, len(again.rows)) == (0, 60, 0)
    moved = apply(updater, records(events[:10], start=500, partition=3))  # same ids elsewhere
    assert (moved.applied, moved.duplicates) == (0, 10)
    want = batch_features(events, SPEC)
    assert online_features(updater.store, list(want)) == want


def test_out_of_order_is_applied_too_old_and_future_are_rejected(updater) -> None:
    events = make_events(40, 2, seed=2)
    apply(updater, records(events))
    late = dict(events[5], event_id="late", item_id="i7", category_id="c2",
                timestamp=datetime.fromtimestamp(T0 + 3, UTC).isoformat())
    too_old = dict(late, event_id="old",
                   timestamp=datetime.fromtimestamp(T0 - 400 * 86_400, UTC).isoformat())
    future = dict(late, event_id="future",
                  timestamp=datetime.fromtimestamp(time.time() + 86_400, UTC).isoformat())
    result = apply(updater, records([late, too_old, future], start=100))
    assert result.applied == 1
    assert sorted(r.reason for r in result.rejected) == ["future timestamp", "too old"]
    want = batch_features([*events, late], SPEC)
    assert online_features(updater.store, list(want)) == want


def test_rejects_name_the_reason(updater) -> None:
    good = make_events(1, 1)[0]
    bad = [
        b"{not json", json.dumps({k: v for k, v in good.items() if k != "item_id"}).encode(),
        json.dumps({**good, "user_id": 5}).encode(),
        json.dumps({**good, "item_id": "i999"}).encode(),
        json.dumps({**good, "category_id": "nope"}).encode(),
        b'{"user_id": "' + b"x" * (10 * 2**20) + b'"}',
    ]
    recs = [SimpleNamespace(topic="t", partition=0, offset=k, value=v, timestamp=0)
            for k, v in enumerate(bad)]
    result = updater.process(recs)
    assert [r.reason for r in result.rejected] == [
        "malformed", "malformed", "malformed", "unknown item", "unknown category",
        "oversized payload"]
    assert "item_id" in result.rejected[1].detail and "user_id" in result.rejected[2].detail
    payload = json.loads(result.rejected[5].payload())
    assert payload["size"] == len(bad[5]) and payload["truncated"]


def test_cli_defaults_are_the_worker_defaults() -> None:
    from streaming.cli import DEFAULTS
    from streaming.worker import WorkerConfig

    assert {k: getattr(WorkerConfig, k) for k in DEFAULTS} == DEFAULTS
