"""Topics, the JSON wire format, vocabularies, and producing click events.

Messages on :data:`TOPIC` are JSON objects of :class:`ccrec.schema.Event`
(``schema_version`` included), keyed by ``user_id`` so that one user's events
stay in one partition, in order. Rejected messages go to :data:`DLQ_TOPIC`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ccrec.schema import SCHEMA_VERSION, Event
from streaming.broker import KafkaSettings

log = logging.getLogger(__name__)

TOPIC = "ccrec.interactions"
DLQ_TOPIC = "ccrec.interactions.dlq"
DEFAULT_PARTITIONS = 4


@dataclass(frozen=True)
class Vocabulary:
    """External ids → the integer codes the features use (index 0 is padding).

    Args:
        items: item id → index.
        categories: category id → index.
        user_features: f_t column → value → index (0 = unknown).
    """

    items: dict[str, int]
    categories: dict[str, int]
    user_features: dict[str, dict[str, int]]

    @classmethod
    def from_vocab(cls, vocab: dict) -> Vocabulary:
        """From a prepared data set's (or a model bundle's) ``vocab.json`` content."""
        if "items" not in vocab:
            raise ValueError("vocab.json has no item vocabulary ('items'): a bundle saved "
                             "before bundles carried it; save the bundle again")
        return cls(
            items={v: i for i, v in enumerate(vocab["items"]) if i > 0},
            categories={v: i for i, v in enumerate(vocab["categories"]) if i > 0},
            user_features={
                column: {v: i for i, v in enumerate(values) if i > 0}
                for column, values in vocab.get("user_features", {}).items()
            },
        )

    @classmethod
    def from_prepared(cls, dataset_or_path: str | Path) -> Vocabulary:
        """From a prepared data set's name or directory."""
        from ccrec.data.prepared import resolve

        path = resolve(dataset_or_path) / "vocab.json"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; run `ccrec data prepare` first")
        return cls.from_vocab(json.loads(path.read_text()))


def encode(event: Event | dict[str, Any]) -> bytes:
    """One event as the wire format's JSON bytes."""
    if isinstance(event, Event):
        return event.model_dump_json(exclude_none=True).encode()
    return json.dumps({"schema_version": SCHEMA_VERSION, **event}, default=str).encode()


def ensure_topics(
    settings: KafkaSettings, partitions: int = DEFAULT_PARTITIONS,
    topics: tuple[str, ...] = (TOPIC, DLQ_TOPIC),
) -> None:
    """Create the events topic and its DLQ if they do not exist."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(**settings.config())
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if new:
            admin.create_topics(new)
            log.info("created topics %s", [t.name for t in new])
    finally:
        admin.close()


class StreamUnavailable(RuntimeError):
    """The broker cannot be reached, or did not acknowledge an event in time."""


class EventProducer:
    """Produces click events to Kafka, keyed by user.

    Args:
        settings: where the brokers are.
        topic: the topic (default :data:`TOPIC`).
        **producer: extra kafka-python KafkaProducer settings.

    Raises :class:`StreamUnavailable` when no broker answers. Batch producers
    call :meth:`send` then :meth:`flush`; the HTTP API awaits :meth:`send_async`.
    """

    def __init__(self, settings: KafkaSettings, topic: str = TOPIC, **producer: Any) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        options = {"linger_ms": 5, "acks": "all", "max_request_size": 16 * 2**20, **producer}
        self.topic = topic
        try:
            self.producer = KafkaProducer(**settings.config(), **options)
        except KafkaError as exc:
            raise StreamUnavailable(
                f"no Kafka broker answers at {settings.bootstrap_servers}: {exc}") from exc

    def send(self, event: Event | dict[str, Any]):
        """Send one event (a validated :class:`Event` or a dict in the wire format)."""
        user = event.user_id if isinstance(event, Event) else str(event["user_id"])
        return self.producer.send(self.topic, key=user.encode(), value=encode(event))

    async def send_async(self, event: Event, timeout: float = 10.0):
        """Send one event and wait, without blocking the event loop, for the broker's
        acknowledgement: its ``RecordMetadata`` (topic, partition, offset).

        Raises:
            StreamUnavailable: the broker did not acknowledge it within ``timeout`` s.
        """
        from kafka.errors import KafkaError

        loop = asyncio.get_running_loop()
        acked: asyncio.Future = loop.create_future()

        def settle(meta: Any = None, error: BaseException | None = None) -> None:
            if acked.done():
                return
            if error is not None:
                acked.set_exception(error)
            else:
                acked.set_result(meta)

        try:
            future = self.send(event)
        except KafkaError as exc:
            raise StreamUnavailable(f"cannot send to Kafka: {exc}") from exc
        future.add_callback(lambda meta: loop.call_soon_threadsafe(settle, meta))
        future.add_errback(lambda exc: loop.call_soon_threadsafe(settle, None, exc))
        try:
            return await asyncio.wait_for(acked, timeout)
        except (TimeoutError, KafkaError) as exc:
            raise StreamUnavailable(
                f"Kafka did not acknowledge the event: {str(exc) or f'no answer in {timeout} s'}"
            ) from exc

    def send_raw(self, value: bytes, key: bytes | None = None):
        """Send bytes as they are (tests use it for malformed messages)."""
        return self.producer.send(self.topic, key=key, value=value)

    def flush(self, timeout: float | None = 30) -> None:
        self.producer.flush(timeout)

    def close(self) -> None:
        self.producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dataset_events(
    dataset_or_path: str | Path, limit: int | None = None, users: int | None = None, *,
    newest: bool = False, end: float | None = None,
) -> Iterator[dict]:
    """A prepared data set's events, in time order, as wire-format dicts (external ids).

    ``limit``: the first ``limit`` events (the latest ones with ``newest``).
    ``users``: spread the events over this many user ids instead (``<name>-<k>``,
    the k-th event to a shuffled ``k mod users``): the load of a service where
    almost every event touches another user.
    ``end``: re-time the events so that the last one happens at ``end`` (epoch s); the
    gaps between events stay as they were: the data set as if its clicks were recent.
    """
    from ccrec.data.prepared import resolve

    path = resolve(dataset_or_path)
    vocab = json.loads((path / "vocab.json").read_text())
    coded = pd.read_parquet(path / "events.parquet")
    order = np.argsort(coded["timestamp"].to_numpy(), kind="stable")
    if limit is not None:
        order = order[len(order) - min(limit, len(order)):] if newest else order[:limit]
    names, items, cats = vocab["users"], vocab["items"], vocab["categories"]
    name = path.name
    user_codes = coded["user"].to_numpy()[order]
    if users is not None:
        names = [f"{name}-{k}" for k in np.random.default_rng(0).permutation(users)]
        user_codes = np.arange(len(order)) % users
    times = coded["timestamp"].to_numpy()[order]
    if end is not None and len(times):
        times = times + (int(end) - int(times[-1]))
    for row, u, i, c, t in zip(
        order, user_codes, coded["item"].to_numpy()[order],
        coded["category"].to_numpy()[order], times, strict=True,
    ):
        yield {
            "user_id": names[u], "item_id": items[i], "category_id": cats[c],
            "event_type": "click",
            "timestamp": datetime.fromtimestamp(int(t), UTC).isoformat(),
            "event_id": f"{name}:{row}",
        }


def replay(
    producer: EventProducer, events: Iterator[dict], rate: float | None = None,
    on_sent: Any = None,
) -> int:
    """Produce ``events`` at ``rate`` events/s (as fast as possible when None).

    Returns the number of events sent. ``on_sent(count)`` is called every second.
    """
    sent = 0
    started = time.perf_counter()
    last_report = started
    for event in events:
        producer.send(event)
        sent += 1
        if rate:
            ahead = sent / rate - (time.perf_counter() - started)
            if ahead > 0.002:
                time.sleep(ahead)
        if on_sent and time.perf_counter() - last_report >= 1.0:
            last_report = time.perf_counter()
            on_sent(sent)
    producer.flush()
    return sent
