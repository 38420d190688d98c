"""StreamWorker.process, the worker's batch step without Kafka, on a real SQLite Feast store.

The invariant: ``process`` never raises for what a message holds, and every
record ends in exactly one outcome: applied (its event is in the stored state),
a duplicate (a redelivery; its event is there already), or the DLQ with a reason.
"""

from __future__ import annotations

import itertools
import json
import string
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from stream_helpers import NUM_CATEGORIES, NUM_ITEMS, T0, worker_config

from ccrec.schema import parse_event
from features import definitions as d
from features.store import open_store
from streaming.broker import KafkaSettings
from streaming.events import Vocabulary
from streaming.state import UserState
from streaming.updater import Outcome
from streaming.worker import StreamWorker

#: Four payloads that once stopped the stream for good.
POISON = [
    ('{"user_id": "u1", "item_id": "i1", "category_id": "c2", '
     '"timestamp": "1500-01-01T00:00:00Z"}', "timestamp out of range"),
    ('{"user_id": "u1", "item_id": "i1", "category_id": "c2", '
     '"timestamp": "9999-12-31T23:59:59-23:59"}', "timestamp out of range"),
    ('{"user_id": "u1", "item_id": "i1", "category_id": "c2", '
     '"timestamp": "0001-01-01T00:00:00+01:00"}', "timestamp out of range"),
    ('{"user_id": "\\ud800", "item_id": "i1", "category_id": "c2", '
     '"timestamp": "2024-01-01T00:00:00Z"}', "malformed"),
]
OFFSETS = itertools.count()


@pytest.fixture(scope="module")
def worker(tmp_path_factory, vocab_dir_module) -> StreamWorker:
    store = open_store(tmp_path_factory.mktemp("store"))
    # No broker: process() is the batch step alone.
    return StreamWorker(KafkaSettings("127.0.0.1:1"), store,
                        Vocabulary.from_prepared(vocab_dir_module),
                        worker_config({"topic": "t", "dlq_topic": "t.dlq"}))


@pytest.fixture(scope="module")
def vocab_dir_module(tmp_path_factory):
    path = tmp_path_factory.mktemp("prepared")
    (path / "vocab.json").write_text(json.dumps({
        "users": [], "items": ["<pad>", *[f"i{j}" for j in range(1, NUM_ITEMS + 1)]],
        "categories": ["<pad>", *[f"c{j}" for j in range(1, NUM_CATEGORIES + 1)]],
        "user_features": {}}))
    return path


def records(values: list[bytes], partition: int = 0) -> list[SimpleNamespace]:
    return [SimpleNamespace(topic="t", partition=partition, offset=next(OFFSETS), value=v,
                            timestamp=0) for v in values]


def stored_ids(worker: StreamWorker, user_ids: list[str]) -> dict[str, list[str]]:
    found = worker.online.read(user_ids, (d.WORKER_STATE,))
    return {u: UserState.from_bytes(v[d.WORKER_STATE]).event_ids if v else []
            for u, v in zip(user_ids, found, strict=True)}


def check_invariant(worker: StreamWorker, batch: list, result) -> None:
    """One outcome per record; the DLQ ones carry a reason; applied events are stored."""
    assert len(result.outcomes) == len(batch)
    assert all(isinstance(o, Outcome) for o in result.outcomes)
    dlq = [r for r, o in zip(batch, result.outcomes, strict=True) if o is Outcome.DLQ]
    assert [(r.partition, r.offset) for r in result.rejected] == [
        (r.partition, r.offset) for r in dlq]
    assert all(r.reason and r.detail for r in result.rejected)
    kept = [r for r, o in zip(batch, result.outcomes, strict=True) if o is not Outcome.DLQ]
    parsed = [parse_event(r.value) for r in kept]
    ids = stored_ids(worker, sorted({e.user_id for e in parsed}))
    for one in parsed:
        assert one.dedup_id in ids[one.user_id]


def test_the_four_poison_payloads_go_to_the_dlq_and_the_rest_is_applied(worker) -> None:
    good = [json.dumps({"user_id": "fine", "item_id": f"i{k}", "category_id": f"c{1 + k % 6}",
                        "timestamp": T0 + k, "event_id": f"fine-{k}"}).encode()
            for k in range(1, 4)]
    batch = records([good[0], *[p.encode() for p, _ in POISON], good[1], good[2]])
    result = worker.process(batch)
    assert result.outcomes == [Outcome.APPLIED] + [Outcome.DLQ] * 4 + [Outcome.APPLIED] * 2
    assert [r.reason for r in result.rejected] == [reason for _, reason in POISON]
    assert "outside the accepted range" in result.rejected[1].detail
    check_invariant(worker, batch, result)
    # The same records again (a redelivery): duplicates, and the same rejects.
    again = worker.process(batch)
    assert again.outcomes == [Outcome.DUPLICATE] + [Outcome.DLQ] * 4 + [Outcome.DUPLICATE] * 2
    assert [r.reason for r in again.rejected] == [reason for _, reason in POISON]


def test_a_record_that_breaks_the_recompute_is_isolated(worker, monkeypatch) -> None:
    """A failure that is not an unavailable store: the batch is split until the record at
    fault is alone; it goes to the DLQ ("processing error"), the others are applied."""
    import streaming.updater as updater_module

    real = updater_module.user_rows

    def breaks_on_one_user(new, *args, **kwargs):
        if "breaks" in new:
            raise ZeroDivisionError("a fault of this user's data")
        return real(new, *args, **kwargs)

    monkeypatch.setattr(updater_module, "user_rows", breaks_on_one_user)
    users = ["a1", "a2", "breaks", "a3", "a4", "a5", "a6"]
    batch = records([json.dumps({"user_id": u, "item_id": "i3", "category_id": "c4",
                                 "timestamp": T0 + k, "event_id": f"iso-{k}"}).encode()
                     for k, u in enumerate(users)])
    isolated = worker.stats.isolated
    result = worker.process(batch)
    assert result.outcomes == [Outcome.APPLIED] * 2 + [Outcome.DLQ] + [Outcome.APPLIED] * 4
    assert [(r.reason, r.offset) for r in result.rejected] == [
        ("processing error", batch[2].offset)]
    assert "ZeroDivisionError: a fault of this user's data" in result.rejected[0].detail
    assert worker.stats.isolated - isolated == 3  # 7 → 3 + 4 → 1 + 2 → 1 + 1
    check_invariant(worker, batch, result)


# ---- the property: any payloads ---------------------------------------------------------------
identifiers = st.text(alphabet=string.ascii_letters + string.digits + "-_é€", min_size=1,
                      max_size=12)
offsets = st.integers(-24 * 60 + 1, 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                        timezones=st.none() | st.just(UTC) | offsets)
recent = st.integers(T0 - 400 * 86_400, T0 + 30 * 86_400)
timestamps = (instants.map(lambda t: t.isoformat()) | recent
              | recent.map(lambda t: datetime.fromtimestamp(t, UTC).isoformat())
              | st.floats(allow_nan=True) | st.integers() | st.text(max_size=30))
known_item = st.integers(1, NUM_ITEMS + 3).map(lambda i: f"i{i}")
known_category = st.integers(1, NUM_CATEGORIES + 1).map(lambda c: f"c{c}")
events = st.fixed_dictionaries(
    {"user_id": st.sampled_from(["p1", "p2", "p3", "é"]) | identifiers,
     "item_id": known_item | identifiers, "category_id": known_category | identifiers,
     "timestamp": timestamps},
    optional={"event_type": st.sampled_from(["click", "view", "purchase", "teleport"]),
              "event_id": identifiers, "schema_version": st.integers(0, 3),
              "user_features": st.dictionaries(identifiers, identifiers, max_size=2),
              "extra": st.integers()})
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=8)
valid_events = st.fixed_dictionaries(
    {"user_id": st.sampled_from(["p1", "p2", "p3", "é"]) | identifiers,
     "item_id": st.integers(1, NUM_ITEMS).map(lambda i: f"i{i}"),
     "category_id": st.integers(1, NUM_CATEGORIES).map(lambda c: f"c{c}"),
     "timestamp": recent | recent.map(lambda t: datetime.fromtimestamp(t, UTC).isoformat())},
    optional={"event_id": identifiers})
payloads = (valid_events.map(lambda e: json.dumps(e).encode())
            | valid_events.map(lambda e: json.dumps(e).encode())
            | events.map(lambda e: json.dumps(e).encode())
            | events.map(lambda e: json.dumps(e, ensure_ascii=False).encode())
            | json_values.map(lambda v: json.dumps(v).encode())
            | st.binary(max_size=64) | st.sampled_from([p.encode() for p, _ in POISON]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(payloads, min_size=1, max_size=12), partition=st.integers(0, 3),
       redeliver=st.booleans())
def test_process_never_raises_and_every_record_has_one_outcome(
    worker, batch, partition, redeliver
) -> None:
    recs = records(batch, partition)
    result = worker.process(recs)
    check_invariant(worker, recs, result)
    for outcome in set(result.outcomes):
        event(f"a record {outcome}")
    for rejected in result.rejected:
        event(f"DLQ: {rejected.reason}")
    if redeliver:  # the batch again, as after a crash before the commit
        again = worker.process(recs)
        check_invariant(worker, recs, again)
        assert [o is Outcome.DLQ for o in again.outcomes] == [
            o is Outcome.DLQ for o in result.outcomes]
        assert Outcome.APPLIED not in again.outcomes


class RecordingClients:
    """Stand-ins for the DLQ producer and the consumer that record the order of calls; the
    first DLQ acknowledgement fails as a broker timeout does."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def send(self, topic, value, headers):
        self.calls.append(f"send {json.loads(value)['reason']}")
        failed = self.calls.count("ack failed") == 0
        return SimpleNamespace(get=lambda timeout: self._ack(failed))

    def _ack(self, failed: bool) -> None:
        from kafka.errors import KafkaTimeoutError

        self.calls.append("ack failed" if failed else "ack")
        if failed:
            raise KafkaTimeoutError("no acknowledgement")

    def flush(self, timeout):
        self.calls.append("flush")

    def commit(self, offsets):
        self.calls.append(f"commit {sorted(o.offset for o in offsets.values())}")


def test_the_dlq_send_is_acknowledged_before_the_commit(worker, monkeypatch) -> None:
    clients = RecordingClients()
    monkeypatch.setattr(worker, "producer", clients)
    monkeypatch.setattr(worker, "consumer", clients)
    monkeypatch.setattr(worker.backoff, "initial_s", 0.01)
    batch = records([b"{not json", json.dumps({
        "user_id": "acked", "item_id": "i1", "category_id": "c2", "timestamp": T0}).encode()])
    worker._handle(batch)
    assert clients.calls == ["send malformed", "flush", "ack failed",  # retried: no commit
                             "send malformed", "flush", "ack", f"commit [{batch[1].offset + 1}]"]
