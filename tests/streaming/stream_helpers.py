"""Helpers for the streaming tests: events, the batch reference, online reads."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ccrec.data.sequences import SequenceSpec, past_sequences
from features.store import (
    batch_sequence_features,
    online_sequence_features,
    open_store,
    read_state,
)
from streaming.broker import EmbeddedBroker, KafkaSettings
from streaming.config import WorkerConfig
from streaming.events import ensure_topics

NUM_ITEMS, NUM_CATEGORIES = 40, 6
SPEC = SequenceSpec(max_past=4)
#: Group timing low enough for the embedded broker's join (~max_poll_interval_ms).
FAST_GROUP = dict(max_poll_interval_ms=4000, session_timeout_ms=4000, heartbeat_interval_ms=500,
                  batch_size=200,
                  retry_initial_s=0.1, retry_max_s=1.0, sequence=SPEC)
T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())


@pytest.fixture(scope="session")
def broker() -> KafkaSettings:
    with EmbeddedBroker() as running:
        yield KafkaSettings(running.bootstrap_servers)


@pytest.fixture
def topics(broker: KafkaSettings) -> dict:
    """A fresh topic + DLQ per test (tests share the broker)."""
    name = f"ccrec.interactions.t{uuid.uuid4().hex[:8]}"
    ensure_topics(broker, 4, topics=(name, name + ".dlq"))
    return {"topic": name, "dlq_topic": name + ".dlq", "group_id": f"g-{name}"}


@pytest.fixture
def vocab_dir(tmp_path: Path) -> Path:
    """A prepared-style directory with just vocab.json (all the worker reads)."""
    path = tmp_path / "prepared"
    path.mkdir()
    vocab = {
        "users": [],
        "items": ["<pad>", *[f"i{j}" for j in range(1, NUM_ITEMS + 1)]],
        "categories": ["<pad>", *[f"c{j}" for j in range(1, NUM_CATEGORIES + 1)]],
        "user_features": {},
    }
    (path / "vocab.json").write_text(json.dumps(vocab))
    return path


def item_category(item: int) -> int:
    return 1 + item % NUM_CATEGORIES


def make_events(n: int, users: int, seed: int = 0, start: int = T0,
                items: int = NUM_ITEMS) -> list[dict]:
    """Wire-format events (items i1..i<items>), time-ordered per user, over ~40 days."""
    rng = np.random.default_rng(seed)
    times = start + np.sort(rng.integers(0, 40 * 86_400, n))
    out = []
    for k, t in enumerate(times):
        item = int(rng.integers(1, items + 1))
        out.append({
            "user_id": f"u{int(rng.integers(users))}", "item_id": f"i{item}",
            "category_id": f"c{item_category(item)}", "event_type": "click",
            "timestamp": datetime.fromtimestamp(int(t), UTC).isoformat(),
            "event_id": f"e{seed}-{k}",
        })
    return out


def coded(events: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """The batch path's integer events (what ccrec.data.prepare writes)."""
    names = sorted({e["user_id"] for e in events})
    index = {u: i for i, u in enumerate(names)}
    frame = pd.DataFrame({
        "user": [index[e["user_id"]] for e in events],
        "item": [int(e["item_id"][1:]) for e in events],
        "category": [int(e["category_id"][1:]) for e in events],
        "timestamp": [int(datetime.fromisoformat(e["timestamp"]).timestamp()) for e in events],
    })
    return frame, names


def batch_features(events: list[dict], spec: SequenceSpec = SPEC) -> dict[str, dict]:
    """user id → the batch path's features (past_sequences, as training computes them)."""
    frame, names = coded(events)
    return batch_sequence_features(past_sequences(frame, spec), names)


def online_features(store, user_ids) -> dict[str, dict]:
    return online_sequence_features(store, user_ids)


def state_of(store, user_ids) -> dict:
    return read_state(store, list(user_ids))


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path) -> Callable:
    """Opens Feast stores on one root (sqlite) / one Redis project; tears them down after."""
    project = f"s_{uuid.uuid4().hex[:10]}"
    opened = []

    def make(**kwargs):
        store = open_store(tmp_path / "store", request.param, project=project, **kwargs)
        opened.append(store)
        return store

    make.kind = request.param
    yield make
    if opened:
        opened[0].teardown()


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}")


def _offsets(consumer, topic: str) -> dict[int, int]:
    from kafka.structs import TopicPartition

    out = {}
    for partition in consumer.partitions_for_topic(topic) or ():
        offset = consumer.committed(TopicPartition(topic, partition))
        if offset is not None and offset >= 0:
            out[partition] = offset
    return out


def committed(broker: KafkaSettings, topics: dict) -> dict[int, int]:
    """partition → the offset the test's group has committed on the test's topic."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**broker.config(), group_id=topics["group_id"],
                             enable_auto_commit=False)
    try:
        return _offsets(consumer, topics["topic"])
    finally:
        consumer.close(autocommit=False)


def wait_committed(broker: KafkaSettings, topics: dict, total: int, timeout: float = 90) -> None:
    """Until the group has committed ``total`` messages (all partitions together)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(**broker.config(), group_id=topics["group_id"],
                             enable_auto_commit=False)
    try:
        wait_for(lambda: sum(_offsets(consumer, topics["topic"]).values()) >= total, timeout,
                 f"{topics['group_id']} to commit {total} messages")
    finally:
        consumer.close(autocommit=False)


def worker_config(topics: dict, **overrides) -> WorkerConfig:
    return WorkerConfig(**{**FAST_GROUP, **topics, **overrides})

