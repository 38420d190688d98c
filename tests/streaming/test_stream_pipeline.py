"""Kafka → worker → Feast with the real parts: embedded Tansu broker, Feast, SQLite and Redis."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer
from stream_helpers import (
    SPEC,
    T0,
    batch_features,
    committed,
    make_events,
    online_features,
    state_of,
    wait_committed,
    wait_for,
    worker_config,
)

from features import definitions as d
from features.store import historical_features
from streaming.broker import EmbeddedBroker, KafkaSettings, free_port
from streaming.events import EventProducer, Vocabulary, ensure_topics
from streaming.state import UserState
from streaming.worker import CRASH_EXIT_STATUS, StreamWorker

pytestmark = pytest.mark.slow


def produce(broker: KafkaSettings, topic: str, events: list, raw: list[bytes] = ()) -> None:
    with EventProducer(broker, topic=topic) as producer:
        for event in events:
            producer.send(event)
        for value in raw:
            producer.send_raw(value, key=b"bad")
        producer.flush()


def dlq_reasons(broker: KafkaSettings, dlq_topic: str, expected: int) -> list[str]:
    consumer = KafkaConsumer(dlq_topic, **broker.config(), auto_offset_reset="earliest",
                             consumer_timeout_ms=3000)
    reasons = []
    for message in consumer:
        reasons.append(json.loads(message.value)["reason"])
        if len(reasons) >= expected:
            break
    consumer.close()
    return sorted(reasons)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def test_events_to_online_features_end_to_end(broker, topics, make_store, vocab_dir) -> None:
    """Valid, out-of-order and bad events; the online features equal the batch path's."""
    events = make_events(500, 20, seed=10)
    late = dict(events[0], event_id="late", user_id="u3", timestamp=iso(T0 + 5 * 86_400))
    good = make_events(1, 1)[0]
    bad = [
        b"{not json",
        json.dumps({k: v for k, v in good.items() if k != "category_id"}).encode(),
        json.dumps({**good, "timestamp": [1, 2]}).encode(),
        json.dumps({**good, "item_id": "i999", "event_id": "x1"}).encode(),
        json.dumps({**good, "timestamp": iso(time.time() + 86_400), "event_id": "x2"}).encode(),
        b'{"user_id": "' + b"x" * (10 * 2**20) + b'"}',
    ]
    store = make_store()
    worker = StreamWorker(broker, store, Vocabulary.from_prepared(vocab_dir),
                          worker_config(topics)).start()
    produce(broker, topics["topic"], events[:250], bad)
    produce(broker, topics["topic"], [*events[250:], late])
    total = len(events) + 1 + len(bad)
    wait_committed(broker, topics, total)
    worker.stop()
    assert worker.error is None
    want = batch_features([*events, late], SPEC)
    assert online_features(store, list(want)) == want
    stats = worker.stats.as_dict()
    assert stats["applied"] == len(events) + 1 and stats["duplicates"] == 0
    assert stats["dlq"] == {"malformed": 3, "unknown item": 1, "timestamp out of range": 1,
                            "oversized payload": 1}
    assert dlq_reasons(broker, topics["dlq_topic"], len(bad)) == sorted(
        ["malformed"] * 3 + ["unknown item", "timestamp out of range", "oversized payload"])
    assert sum(committed(broker, topics).values()) == total


def _crashing_worker(broker, root, project, vocab_dir, topics) -> None:
    from features.store import open_store

    store = open_store(root, "redis", project=project)
    config = worker_config(topics, batch_size=60, crash_after_pushes=3)
    StreamWorker(broker, store, Vocabulary.from_prepared(vocab_dir), config).run()


def test_crash_mid_batch_then_restart_loses_and_duplicates_nothing(
    broker, topics, tmp_path, vocab_dir
) -> None:
    """A worker killed after pushing but before committing; its successor replays."""
    import uuid

    from features.store import open_store

    events = make_events(400, 15, seed=11)
    produce(broker, topics["topic"], events)
    project = f"crash_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "store"
    # A forked worker process (it has Feast imported already) that exits right after
    # its third push, before committing: a kill in the middle of a batch.
    crashing = multiprocessing.get_context("fork").Process(
        target=_crashing_worker, args=(broker, root, project, vocab_dir, topics))
    crashing.start()
    crashing.join(120)
    assert crashing.exitcode == CRASH_EXIT_STATUS
    store = open_store(root, "redis", project=project)
    try:
        users = sorted({e["user_id"] for e in events})
        pushed = sum(n or 0 for n in state_of(store, users)[d.NUM_PAST_EVENTS])
        uncommitted = pushed - sum(committed(broker, topics).values())
        assert 0 < uncommitted <= 60  # the third batch was pushed, not committed
        worker = StreamWorker(broker, store, Vocabulary.from_prepared(vocab_dir),
                              worker_config(topics)).start()
        wait_committed(broker, topics, len(events))
        worker.stop()
        # The uncommitted batch came again and was skipped; the rest was applied once.
        assert (worker.stats.duplicates, worker.stats.applied) == (
            uncommitted, len(events) - pushed)
        want = batch_features(events, SPEC)
        assert online_features(store, list(want)) == want
        state = state_of(store, list(want))
        for raw in state[d.WORKER_STATE]:
            ids = UserState.from_bytes(raw).event_ids
            assert len(ids) == len(set(ids))
        assert sum(state[d.NUM_PAST_EVENTS]) == len(events)
    finally:
        store.teardown()


def test_two_workers_share_partitions_and_apply_each_event_once(
    broker, topics, make_store, vocab_dir
) -> None:
    vocab = Vocabulary.from_prepared(vocab_dir)
    store = make_store()
    workers = [StreamWorker(broker, make_store(apply=False), vocab, worker_config(topics)).start()
               for _ in range(2)]

    def balanced() -> bool:
        parts = [{tp.partition for tp in w.assignment} for w in workers]
        return all(parts) and not (parts[0] & parts[1]) and len(parts[0] | parts[1]) == 4

    wait_for(balanced, 60, "both workers to get partitions")
    events = make_events(600, 40, seed=12)
    produce(broker, topics["topic"], events)
    wait_committed(broker, topics, len(events))
    for w in workers:
        w.stop()
    assert all(w.stats.applied > 0 for w in workers)
    assert sum(w.stats.applied for w in workers) == len(events)
    assert sum(w.stats.duplicates for w in workers) == 0
    want = batch_features(events, SPEC)
    assert online_features(store, list(want)) == want


def test_feature_store_down_means_no_commit_then_recovery(
    broker, topics, tmp_path, vocab_dir
) -> None:
    import uuid

    from features.store import open_store

    project = f"down_{uuid.uuid4().hex[:8]}"
    good = open_store(tmp_path, "redis", project=project)
    down = open_store(tmp_path, "redis", project=project, redis_url="127.0.0.1:1", apply=False)
    vocab = Vocabulary.from_prepared(vocab_dir)
    events = make_events(50, 5, seed=13)
    produce(broker, topics["topic"], events)
    try:
        worker = StreamWorker(broker, down, vocab, worker_config(topics)).start()
        wait_for(lambda: worker.stats.store_failures >= 2, 60, "retries against the dead store")
        worker.stop()
        assert worker.error is None and worker.stats.consumed == 0
        assert committed(broker, topics) == {}
        worker = StreamWorker(broker, good, vocab, worker_config(topics)).start()
        wait_committed(broker, topics, len(events))
        worker.stop()
        want = batch_features(events, SPEC)
        assert online_features(good, list(want)) == want
    finally:
        good.teardown()


def test_broker_down_retries_with_backoff(tmp_path, vocab_dir, caplog) -> None:
    from features.store import open_store

    caplog.set_level(logging.WARNING, logger="streaming")
    settings = KafkaSettings(f"127.0.0.1:{free_port()}")
    worker = StreamWorker(settings, open_store(tmp_path), Vocabulary.from_prepared(vocab_dir),
                          worker_config({"topic": "none", "dlq_topic": "none.dlq"},
                                        bootstrap_timeout_ms=1000)).start()
    wait_for(lambda: sum("unavailable" in r.getMessage() for r in caplog.records) >= 2, 30,
             "two retry log lines")
    worker.stop()
    assert worker.error is None
    lines = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert "retrying in" in lines[0] and settings.bootstrap_servers in lines[0]


def test_point_in_time_training_data_equals_what_was_served(
    broker, topics, make_store, vocab_dir
) -> None:
    """Stream events in time order; the historical features at each cutoff T equal the
    online features served at T and the batch features of the events before T."""
    store = make_store()
    worker = StreamWorker(broker, store, Vocabulary.from_prepared(vocab_dir),
                          worker_config(topics)).start()
    events = make_events(450, 12, seed=14)
    cutoffs = [T0 + 10 * 86_400, T0 + 20 * 86_400, T0 + 30 * 86_400]
    users = sorted({e["user_id"] for e in events})
    served = {}
    sent = 0
    for cutoff in cutoffs:
        chunk = [e for e in events[sent:] if datetime.fromisoformat(e["timestamp"]).timestamp()
                 < cutoff]
        produce(broker, topics["topic"], chunk)
        sent += len(chunk)
        wait_committed(broker, topics, sent)
        served[cutoff] = online_features(store, users)
    worker.stop()
    pairs = [(u, c) for c in cutoffs for u in users]
    history = historical_features(store, [u for u, _ in pairs], [c for _, c in pairs])
    for (user, cutoff), (_, row) in zip(pairs, history.iterrows(), strict=True):
        before = [e for e in events if datetime.fromisoformat(e["timestamp"]).timestamp() < cutoff]
        batch = batch_features(before, SPEC).get(user)
        got = {k: [int(v) for v in row[k]] if isinstance(row[k], list) else int(row[k])
               for k in batch or served[cutoff][user]}
        if batch is None:  # no events yet: nothing was served either
            assert served[cutoff][user][d.NUM_PAST_EVENTS] is None
            assert got[d.NUM_PAST_EVENTS] == 0
            continue
        assert got == served[cutoff][user] == batch, (user, cutoff)


def test_after_a_broker_reset_new_events_are_applied(make_store, vocab_dir) -> None:
    """A fresh broker (memory storage: offsets start at 0 again) with the same store: the
    stored offsets belong to the old topic incarnation, so the new events are applied."""
    store = make_store()
    vocab = Vocabulary.from_prepared(vocab_dir)
    before = make_events(120, 6, seed=21)
    after = make_events(120, 6, seed=22, start=T0 + 50 * 86_400)
    workers = []
    for events in (before, after):
        with EmbeddedBroker() as running:
            settings = KafkaSettings(running.bootstrap_servers)
            topics = {"topic": "ccrec.reset", "dlq_topic": "ccrec.reset.dlq",
                      "group_id": "g-reset"}
            ensure_topics(settings, 4, topics=(topics["topic"], topics["dlq_topic"]))
            produce(settings, topics["topic"], events)
            worker = StreamWorker(settings, store, vocab, worker_config(topics)).start()
            wait_committed(settings, topics, len(events))
            worker.stop()
            workers.append(worker)
    assert [(w.stats.applied, w.stats.duplicates) for w in workers] == [(120, 0), (120, 0)]
    assert len({next(iter(w.updater.topic_ids.values())) for w in workers}) == 2
    want = batch_features(before + after, SPEC)
    assert online_features(store, list(want)) == want


def test_every_producer_waits_for_all_in_sync_replicas(broker, topics, tmp_path, vocab_dir):
    """acks=all: the events producer (the API's clicks, replays) and the worker's DLQ."""
    from features.store import open_store

    with EventProducer(broker, topic=topics["topic"]) as producer:
        assert producer.producer.config["acks"] == -1  # kafka-python's spelling of "all"
    worker = StreamWorker(broker, open_store(tmp_path), Vocabulary.from_prepared(vocab_dir),
                          worker_config(topics)).start()
    wait_for(lambda: worker.producer is not None, 60, "the worker's clients")
    worker.stop()
    assert worker.producer.config["acks"] == -1
