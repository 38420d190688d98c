"""The updater without Kafka: validation, idempotency, batch/stream equality."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest
from stream_helpers import SPEC, T0, batch_features, make_events, online_features, worker_config

from features.online import OnlineRows
from features.store import SEQUENCE_VIEW, open_store, push_view_rows
from streaming.events import Vocabulary, encode
from streaming.updater import CodedEvent, FeatureUpdater, Outcome, Rejected


def records(events: list[dict], start: int = 0, partition: int = 0) -> list[SimpleNamespace]:
    return [SimpleNamespace(topic="t", partition=partition, offset=start + k, value=encode(e),
                            timestamp=time.time() * 1000) for k, e in enumerate(events)]


def raw(value: bytes, offset: int = 0, partition: int = 0) -> SimpleNamespace:
    return SimpleNamespace(topic="t", partition=partition, offset=offset, value=value, timestamp=0)


@pytest.fixture
def store(tmp_path):
    return open_store(tmp_path / "store")


@pytest.fixture
def updater(store, vocab_dir) -> FeatureUpdater:
    online = OnlineRows(store, store.get_feature_view(SEQUENCE_VIEW))
    return FeatureUpdater(online, Vocabulary.from_prepared(vocab_dir),
                          worker_config({}, cache_state=False))


def apply(updater: FeatureUpdater, recs) -> object:
    result = updater.process(recs)
    if result.rows is not None:
        push_view_rows(updater.online, result.rows)
    updater.remember(result.states)
    return result


def test_a_valid_message_becomes_a_coded_event(updater) -> None:
    """The vocabulary codes (item i7 → 7, category c2 → 2), epoch seconds, the Kafka position."""
    message = {"user_id": "u1", "item_id": "i7", "category_id": "c2",
               "timestamp": "2024-01-01T01:00:00+01:00", "event_id": "e-1"}
    got = updater.validate(raw(json.dumps(message).encode(), offset=9, partition=3), time.time())
    assert got == CodedEvent("u1", 7, 2, T0, "e-1", "", 3, 9)
    # Without an event id, the schema's content id; a naive time is UTC; epoch seconds pass.
    message = {"user_id": "u1", "item_id": "i7", "category_id": "c2",
               "timestamp": "2024-01-01T00:00:10"}
    got = updater.validate(raw(json.dumps(message).encode()), time.time())
    assert (got.timestamp, got.event_id) == (T0 + 10, f"u1|i7|c2|{T0 + 10}")
    got = updater.validate(raw(json.dumps({**message, "timestamp": T0 + 20}).encode()), time.time())
    assert got.timestamp == T0 + 20


def test_stream_equals_batch_in_any_batching(updater, store) -> None:
    events = make_events(400, 12, seed=3)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, 400), 9, replace=False))
    offset = 0
    for chunk in np.split(np.arange(400), cuts):
        apply(updater, records([events[i] for i in chunk], offset))
        offset += len(chunk)
    want = batch_features(events, SPEC)
    assert online_features(store, list(want)) == want


def test_many_users_with_first_events_equal_batch(updater, store) -> None:
    """Most users here have one event (their rows skip past_sequences); some have more."""
    events = make_events(300, 250, seed=5)
    counts = {}
    for e in events:
        counts[e["user_id"]] = counts.get(e["user_id"], 0) + 1
    assert sum(n == 1 for n in counts.values()) > 100 and max(counts.values()) > 2
    for start in (0, 100, 200):
        apply(updater, records(events[start:start + 100], start))
    want = batch_features(events, SPEC)
    assert online_features(store, list(want)) == want


def test_replayed_offsets_and_event_ids_apply_once(updater, store) -> None:
    events = make_events(60, 4, seed=1)
    first = apply(updater, records(events))
    assert first.applied == 60
    again = apply(updater, records(events))  # a redelivery after a crash
    assert (again.applied, again.duplicates, again.rows) == (0, 60, None)
    moved = apply(updater, records(events[:10], start=500, partition=3))  # same ids elsewhere
    assert (moved.applied, moved.duplicates) == (0, 10)
    want = batch_features(events, SPEC)
    assert online_features(store, list(want)) == want


def test_the_state_records_the_last_position_and_ids(updater) -> None:
    events = [dict(e, user_id="solo") for e in make_events(5, 1, seed=4)]
    result = apply(updater, records(events, start=40, partition=2))
    state = result.states["solo"]
    assert (state.partition, state.offset) == (2, 44)
    assert state.event_ids == [e["event_id"] for e in events]
    assert len(state.items) == 5 and result.rows.keys == ["solo"]


def test_out_of_order_is_applied_too_old_and_future_are_rejected(updater, store) -> None:
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
    assert sorted(r.reason for r in result.rejected) == ["timestamp out of range", "too old"]
    assert result.outcomes == [Outcome.APPLIED, Outcome.DLQ, Outcome.DLQ]
    want = batch_features([*events, late], SPEC)
    assert online_features(store, list(want)) == want


def test_rejects_name_the_reason(updater) -> None:
    good = make_events(1, 1)[0]
    bad = [
        b"{not json", json.dumps({k: v for k, v in good.items() if k != "item_id"}).encode(),
        json.dumps({**good, "user_id": 5}).encode(),
        json.dumps({**good, "item_id": "i999"}).encode(),
        json.dumps({**good, "category_id": "nope"}).encode(),
        b'{"user_id": "' + b"x" * (10 * 2**20) + b'"}',
    ]
    result = updater.process([raw(v, offset=k) for k, v in enumerate(bad)])
    assert [r.reason for r in result.rejected] == [
        "malformed", "malformed", "malformed", "unknown item", "unknown category",
        "oversized payload"]
    assert "item_id" in result.rejected[1].detail and "user_id" in result.rejected[2].detail
    assert [r.offset for r in result.rejected] == list(range(6))
    payload = json.loads(result.rejected[5].payload())
    assert payload["size"] == len(bad[5]) and payload["truncated"]


def test_dlq_payload_is_the_reject_with_its_source() -> None:
    rejected = Rejected("unknown item", "i999", "events", 3, 17, b'{"item_id": "i999"}')
    assert json.loads(rejected.payload()) == {
        "reason": "unknown item", "detail": "i999",
        "source": {"topic": "events", "partition": 3, "offset": 17},
        "size": 19, "payload": '{"item_id": "i999"}', "truncated": False}
    assert json.loads(rejected.payload(limit=4))["payload"] == '{"it'
