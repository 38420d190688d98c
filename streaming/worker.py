"""The streaming worker: Kafka click events → user state → Feast, then commit.

Per micro-batch (one ``poll``):

1. validate each message (size, JSON schema, known item and category, not in
   the future); rejects go to the DLQ with the reason;
2. read the touched users' rows (one ``get_online_features`` call, or the
   worker's cache of rows it wrote itself since its last partition assignment);
3. drop events already applied: offset ≤ the row's applied offset in the same
   partition, or an event id the row has seen;
4. append the new events to each user's retained events and recompute every
   touched user at once with the shared :func:`ccrec.data.sequences.past_sequences`;
5. push the rows — features *and* state (retained events, applied offset,
   recent event ids) in one row per user, so in one write — then flush the DLQ
   and only then commit the offsets.

A crash anywhere before the commit makes Kafka redeliver the batch; step 3
skips what the stored rows already hold, so nothing is applied twice and
nothing is lost (at-least-once delivery, idempotent application).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from ccrec.data.sequences import SequenceSpec, past_sequences, retained
from ccrec.schema import (
    MAX_ID_LENGTH,
    SCHEMA_VERSION,
    EventType,
    EventValidationError,
    parse_event,
)
from features import definitions as d
from features.store import push_rows, read_state, sequence_columns
from streaming.broker import KafkaSettings
from streaming.events import DLQ_TOPIC, TOPIC, Vocabulary

log = logging.getLogger(__name__)

SEQUENCE_PUSH = d.user_category_sequence_push.name


@dataclass(frozen=True)
class WorkerConfig:
    """How the worker consumes, validates and batches.

    Args:
        group_id: the Kafka consumer group.
        topic: the events topic; dlq_topic: where rejects go.
        batch_size: at most this many messages per micro-batch.
        poll_timeout_ms: how long one poll waits for messages.
        max_event_bytes: larger messages are rejected ("oversized payload").
        future_tolerance_s: events later than now + this are rejected.
        max_event_ids: how many recent event ids each user's row keeps.
        max_poll_interval_ms / session_timeout_ms / heartbeat_interval_ms:
            consumer-group timing (the embedded broker's join waits about
            max_poll_interval_ms, so tests set it low).
        fetch_max_wait_ms: how long the broker may hold a fetch for more data
            (low: freshness).
        bootstrap_timeout_ms: how long one attempt to reach the brokers may take.
        retry_initial_s / retry_max_s: the exponential backoff on failures.
        cache_state: keep the rows this worker wrote (cleared on rebalance)
            instead of reading them back from the online store.
        sequence: the grouping and retention rules (as in training).
        crash_after_pushes: fault injection for tests: exit the process right
            after this many pushes, before committing.
    """

    group_id: str = "ccrec-features"
    topic: str = TOPIC
    dlq_topic: str = DLQ_TOPIC
    batch_size: int = 5000
    poll_timeout_ms: int = 50
    max_event_bytes: int = 64 * 1024
    future_tolerance_s: float = 300.0
    max_event_ids: int = 256
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    fetch_max_wait_ms: int = 50
    bootstrap_timeout_ms: int = 30_000
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    cache_state: bool = True
    sequence: SequenceSpec = field(default_factory=SequenceSpec)
    crash_after_pushes: int | None = None


@dataclass
class Stats:
    """What the worker has done (all counts since start)."""

    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    batches: int = 0
    pushes: int = 0
    users_pushed: int = 0
    dlq: Counter = field(default_factory=Counter)
    store_failures: int = 0
    first_batch_at: float | None = None  # time.time() when the first batch arrived
    last_batch_at: float | None = None  # ... and when the latest was committed
    #: (produce → readable online) latency in ms of recent events.
    freshness_ms: deque = field(default_factory=lambda: deque(maxlen=200_000))
    #: (records, CPU ms of this thread, wall ms) per batch: validate → commit.
    batch_costs: deque = field(default_factory=lambda: deque(maxlen=10_000))

    def as_dict(self) -> dict[str, Any]:
        return {
            "consumed": self.consumed, "applied": self.applied, "duplicates": self.duplicates,
            "batches": self.batches, "pushes": self.pushes, "users_pushed": self.users_pushed,
            "dlq": dict(self.dlq), "dlq_total": sum(self.dlq.values()),
            "store_failures": self.store_failures,
        }


@dataclass
class Rejected:
    """A message for the DLQ."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    value: bytes | None

    def payload(self, limit: int = 16 * 1024) -> bytes:
        text = (self.value or b"")[:limit].decode("utf-8", errors="replace")
        return json.dumps({
            "reason": self.reason, "detail": self.detail,
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
            "size": len(self.value or b""), "payload": text,
            "truncated": len(self.value or b"") > limit,
        }).encode()


@dataclass
class UserState:
    """One user's retained events and applied position (the stored row's state part)."""

    items: np.ndarray
    categories: np.ndarray
    timestamps: np.ndarray
    event_ids: list[str]
    partition: int
    offset: int

    @property
    def latest(self) -> int:
        return int(self.timestamps.max()) if len(self.timestamps) else -(2**62)


@dataclass
class BatchResult:
    rows: pd.DataFrame
    rejected: list[Rejected]
    applied: int
    duplicates: int
    states: dict[str, UserState]


class FeatureUpdater:
    """Validates a batch of messages and computes the rows to push (no Kafka here).

    Args:
        store: the Feast store (reads state when it is not cached).
        vocab: item and category vocabularies.
        config: validation and retention settings.
    """

    def __init__(self, store: FeatureStore, vocab: Vocabulary, config: WorkerConfig) -> None:
        self.store, self.vocab, self.config = store, vocab, config
        self.cache: dict[str, UserState] = {}

    # -- validation ------------------------------------------------------------------------
    def validate(self, record: Any, now: float):
        """(user_id, item, category, timestamp, dedup_id) or a :class:`Rejected`."""
        value = record.value

        def reject(reason: str, detail: str) -> Rejected:
            return Rejected(reason, detail, record.topic, record.partition, record.offset, value)

        if value is None:
            return reject("malformed", "empty message")
        if len(value) > self.config.max_event_bytes:
            return reject("oversized payload",
                          f"{len(value)} bytes > {self.config.max_event_bytes}")
        fields = fast_parse(value)
        if fields is None:  # not the common shape: the schema decides, and names the error
            try:
                event = parse_event(value, source=f"{record.topic}[{record.partition}]")
            except EventValidationError as exc:
                return reject("malformed", str(exc))
            fields = (event.user_id, event.item_id, event.category_id, event.epoch_seconds,
                      event.dedup_id)
        user_id, item_id, category_id, ts, dedup_id = fields
        item = self.vocab.items.get(item_id)
        if item is None:
            return reject("unknown item", item_id)
        category = self.vocab.categories.get(category_id)
        if category is None:
            return reject("unknown category", category_id)
        if ts > now + self.config.future_tolerance_s:
            return reject("future timestamp", datetime.fromtimestamp(ts, UTC).isoformat())
        return user_id, item, category, ts, dedup_id

    # -- state -----------------------------------------------------------------------------
    def load_states(self, user_ids: list[str]) -> dict[str, UserState | None]:
        missing = [u for u in user_ids if u not in self.cache] if self.config.cache_state \
            else user_ids
        found: dict[str, UserState | None] = {u: self.cache[u] for u in user_ids
                                               if u in self.cache and self.config.cache_state}
        if missing:
            data = read_state(self.store, missing)
            for i, user_id in enumerate(missing):
                items = data[d.LOG_ITEMS][i]
                if items is None:
                    found[user_id] = None
                    continue
                found[user_id] = UserState(
                    items=np.asarray(items, np.int64),
                    categories=np.asarray(data[d.LOG_CATEGORIES][i], np.int64),
                    timestamps=np.asarray(data[d.LOG_TIMESTAMPS][i], np.int64),
                    event_ids=list(data[d.LOG_EVENT_IDS][i] or []),
                    partition=int(data[d.APPLIED_PARTITION][i]),
                    offset=int(data[d.APPLIED_OFFSET][i]),
                )
        return found

    # -- one batch -------------------------------------------------------------------------
    def process(self, records: list[Any], now: float | None = None) -> BatchResult:
        """Validate, de-duplicate and recompute; returns the rows to push."""
        now = time.time() if now is None else now
        spec = self.config.sequence
        rejected: list[Rejected] = []
        valid: list[tuple[Any, tuple]] = []
        for record in records:
            outcome = self.validate(record, now)
            if isinstance(outcome, Rejected):
                rejected.append(outcome)
            else:
                valid.append((record, outcome))
        touched = list(dict.fromkeys(ev[0] for _, ev in valid))
        states = self.load_states(touched) if touched else {}

        # Per user: the new events that are neither applied already nor too old.
        new: dict[str, list] = {}
        seen: dict[str, set] = {}
        latest: dict[str, int] = {}
        for _, ev in valid:
            state = states.get(ev[0])
            base = state.latest if state is not None else -(2**62)
            latest[ev[0]] = max(latest.get(ev[0], base), ev[3])
        duplicates = 0
        for record, ev in valid:
            user_id, item, category, ts, dedup_id = ev
            state = states.get(user_id)
            ids = seen.get(user_id)
            if ids is None:
                ids = seen[user_id] = set(state.event_ids) if state is not None else set()
            if state is not None and (
                record.partition == state.partition and record.offset <= state.offset
            ) or dedup_id in ids:
                duplicates += 1
                continue
            ids.add(dedup_id)
            if ts < latest[user_id] - spec.horizon_seconds:
                rejected.append(Rejected(
                    "too old", f"{ts} is older than the user's latest event {latest[user_id]} "
                    f"minus the {spec.horizon_days:g}-day horizon",
                    record.topic, record.partition, record.offset, record.value))
                continue
            new.setdefault(user_id, []).append((item, category, ts, dedup_id,
                                                record.partition, record.offset))
        applied = sum(len(v) for v in new.values())
        rows, new_states = self._recompute(new, states, now) if new else (pd.DataFrame(), {})
        return BatchResult(rows, rejected, applied, duplicates, new_states)

    def _recompute(
        self, new: dict[str, list], states: dict[str, UserState | None], now: float
    ) -> tuple[pd.DataFrame, dict[str, UserState]]:
        """All touched users' retained events and features, with one past_sequences call."""
        spec = self.config.sequence
        users = list(new)
        parts_u, parts_i, parts_c, parts_t = [], [], [], []
        for index, user_id in enumerate(users):
            state = states.get(user_id)
            events = new[user_id]
            items = np.fromiter((e[0] for e in events), np.int64, len(events))
            cats = np.fromiter((e[1] for e in events), np.int64, len(events))
            times = np.fromiter((e[2] for e in events), np.int64, len(events))
            if state is not None:
                items = np.concatenate([state.items, items])
                cats = np.concatenate([state.categories, cats])
                times = np.concatenate([state.timestamps, times])
            parts_u.append(np.full(len(items), index, np.int64))
            parts_i.append(items)
            parts_c.append(cats)
            parts_t.append(times)
        events = pd.DataFrame({
            "user": np.concatenate(parts_u), "item": np.concatenate(parts_i),
            "category": np.concatenate(parts_c), "timestamp": np.concatenate(parts_t),
        })
        kept = retained(events, spec)
        past = past_sequences(kept, spec)  # one call for the whole batch
        rows = sequence_columns(past)
        bounds = np.searchsorted(kept["user"].to_numpy(), np.arange(len(users) + 1))
        k_items = kept["item"].to_numpy()
        k_cats = kept["category"].to_numpy()
        k_times = kept["timestamp"].to_numpy()
        new_states: dict[str, UserState] = {}
        log_items, log_cats, log_times, log_ids, partitions, offsets = [], [], [], [], [], []
        for index, user_id in enumerate(users):
            state = states.get(user_id)
            lo, hi = bounds[index], bounds[index + 1]
            last = new[user_id][-1]
            ids = (state.event_ids if state is not None else []) + [e[3] for e in new[user_id]]
            ids = ids[-self.config.max_event_ids:]
            offset = max(e[5] for e in new[user_id] if e[4] == last[4])
            if state is not None and state.partition == last[4]:
                offset = max(offset, state.offset)
            new_states[user_id] = UserState(
                k_items[lo:hi].copy(), k_cats[lo:hi].copy(), k_times[lo:hi].copy(), ids,
                int(last[4]), int(offset),
            )
            log_items.append(k_items[lo:hi].tolist())
            log_cats.append(k_cats[lo:hi].tolist())
            log_times.append(k_times[lo:hi].tolist())
            log_ids.append(ids)
            partitions.append(int(last[4]))
            offsets.append(int(offset))
        order = rows["user"].to_numpy()  # past_sequences sorts by user index
        rows.insert(0, d.USER_ID, [users[i] for i in order])
        rows[d.LOG_ITEMS] = [log_items[i] for i in order]
        rows[d.LOG_CATEGORIES] = [log_cats[i] for i in order]
        rows[d.LOG_TIMESTAMPS] = [log_times[i] for i in order]
        rows[d.LOG_EVENT_IDS] = [log_ids[i] for i in order]
        rows[d.APPLIED_PARTITION] = np.asarray([partitions[i] for i in order], np.int64)
        rows[d.APPLIED_OFFSET] = np.asarray([offsets[i] for i in order], np.int64)
        rows[d.EVENT_TIMESTAMP] = pd.to_datetime(rows[d.LAST_TIMESTAMP], unit="s", utc=True)
        rows[d.CREATED] = pd.Timestamp(datetime.fromtimestamp(now, UTC))
        return rows.drop(columns=["user"]), new_states

    def remember(self, states: dict[str, UserState]) -> None:
        if self.config.cache_state:
            self.cache.update(states)

    def forget(self) -> None:
        self.cache.clear()


_ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})")
_EVENT_TYPES = frozenset(t.value for t in EventType)
_FAST_KEYS = frozenset({"user_id", "item_id", "category_id", "event_type", "timestamp",
                        "event_id", "schema_version"})


def fast_parse(value: bytes) -> tuple[str, str, str, int, str] | None:
    """The common, plainly valid event without pydantic: (user, item, category, epoch s, id).

    Accepts only what :class:`ccrec.schema.Event` accepts too (string ids of 1..256
    characters, a known event type, an ISO-8601 timestamp with a zone, no extra
    fields); anything else returns None and goes through :func:`parse_event`.
    """
    try:
        obj = json.loads(value)
    except ValueError:
        return None
    if type(obj) is not dict or not obj.keys() <= _FAST_KEYS:
        return None
    ids = (obj.get("user_id"), obj.get("item_id"), obj.get("category_id"))
    event_id = obj.get("event_id")
    for text in (*ids, *((event_id,) if event_id is not None else ())):
        if type(text) is not str or not 0 < len(text) <= MAX_ID_LENGTH:
            return None
    if obj.get("event_type", "click") not in _EVENT_TYPES:
        return None
    version = obj.get("schema_version", SCHEMA_VERSION)
    if type(version) is not int or version > SCHEMA_VERSION:
        return None
    stamp = obj.get("timestamp")
    if type(stamp) is not str or not _ISO_UTC.fullmatch(stamp):
        return None
    try:
        ts = int(datetime.fromisoformat(stamp).timestamp())
    except ValueError:
        return None
    user_id, item_id, category_id = ids
    return user_id, item_id, category_id, ts, event_id or f"{user_id}|{item_id}|{category_id}|{ts}"


def _backoff(attempt: int, config: WorkerConfig) -> float:
    return min(config.retry_max_s, config.retry_initial_s * 2 ** min(attempt, 16))


class StreamWorker:
    """A consumer-group worker that keeps the Feast features fresh.

    Args:
        settings: Kafka brokers and client settings.
        store: the Feast store to push to.
        vocab: item and category vocabularies.
        config: see :class:`WorkerConfig`.

    ``run()`` blocks until ``stop()`` (from another thread or a signal handler);
    ``start()`` runs it in a daemon thread.
    """

    def __init__(
        self, settings: KafkaSettings, store: FeatureStore, vocab: Vocabulary,
        config: WorkerConfig | None = None,
    ) -> None:
        self.settings, self.config = settings, config or WorkerConfig()
        self.updater = FeatureUpdater(store, vocab, self.config)
        self.stats = Stats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.assignment: set = set()
        self.consumer = None
        self.producer = None
        self.error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> StreamWorker:
        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # noqa: BLE001 - kept for the caller to inspect
                self.error = exc
                log.exception("the stream worker failed")

        self._thread = threading.Thread(target=target, name="ccrec-stream-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _connect(self) -> None:
        """Create the consumer and DLQ producer, retrying with backoff while Kafka is down."""
        from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaError

        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                worker.updater.forget()

            def on_partitions_assigned(self, assigned):
                worker.updater.forget()
                worker.assignment = set(assigned)
                log.info("assigned partitions %s", sorted(p.partition for p in assigned))

        attempt = 0
        while not self.stopping:
            try:
                self.consumer = KafkaConsumer(
                    **self.settings.config(), group_id=self.config.group_id,
                    enable_auto_commit=False, auto_offset_reset="earliest",
                    max_poll_records=self.config.batch_size,
                    max_poll_interval_ms=self.config.max_poll_interval_ms,
                    session_timeout_ms=self.config.session_timeout_ms,
                    heartbeat_interval_ms=self.config.heartbeat_interval_ms,
                    fetch_max_bytes=64 * 2**20, max_partition_fetch_bytes=16 * 2**20,
                    bootstrap_timeout_ms=self.config.bootstrap_timeout_ms,
                    fetch_max_wait_ms=self.config.fetch_max_wait_ms,
                )
                self.consumer.subscribe([self.config.topic], listener=Listener())
                self.producer = KafkaProducer(**self.settings.config(), linger_ms=5, acks=1)
                return
            except KafkaError as exc:
                delay = _backoff(attempt, self.config)
                log.warning("Kafka broker at %s unavailable (%s); retrying in %.1fs",
                            self.settings.bootstrap_servers, exc, delay)
                attempt += 1
                self._stop.wait(delay)

    def run(self) -> None:
        """Consume, apply and commit until stopped."""
        from kafka.errors import KafkaError

        self._connect()
        if self.consumer is None:  # stopped while the brokers were unreachable
            return
        reported = time.monotonic()
        attempt = 0
        try:
            while not self.stopping:
                if time.monotonic() - reported >= 30:
                    reported = time.monotonic()
                    log.info("stream worker: %s", self.stats.as_dict())
                try:
                    polled = self.consumer.poll(timeout_ms=self.config.poll_timeout_ms,
                                                max_records=self.config.batch_size)
                    attempt = 0
                except KafkaError as exc:
                    delay = _backoff(attempt, self.config)
                    log.warning("Kafka broker at %s unavailable (%s); retrying in %.1fs",
                                self.settings.bootstrap_servers, exc, delay)
                    attempt += 1
                    self._stop.wait(delay)
                    continue
                records = [r for batch in polled.values() for r in batch]
                if records:
                    self._handle(records)
        finally:
            if self.consumer is not None:
                self.consumer.close(autocommit=False)
            if self.producer is not None:
                self.producer.close(timeout=5)

    # -- one batch -------------------------------------------------------------------------
    def _handle(self, records: list[Any]) -> None:
        if self.stats.first_batch_at is None:
            self.stats.first_batch_at = time.time()
        cpu, wall = time.thread_time(), time.perf_counter()
        attempt = 0
        while True:
            try:
                result = self.updater.process(records)
                if not result.rows.empty:
                    push_rows(self.updater.store, SEQUENCE_PUSH, result.rows)
                break
            except Exception as exc:  # noqa: BLE001 - the store is down: retry, never commit
                self.stats.store_failures += 1
                self.updater.forget()
                delay = _backoff(attempt, self.config)
                log.warning("feature store unavailable (%s: %s); not committing, retrying the "
                            "batch of %d in %.1fs", type(exc).__name__, exc, len(records), delay)
                attempt += 1
                if self._stop.wait(delay):
                    return
        pushed_at = time.time()
        log.debug("batch of %d: %d users pushed, %.0f ms after the oldest was produced",
                  len(records), len(result.rows), pushed_at * 1000 - records[0].timestamp)
        self.updater.remember(result.states)
        self.stats.pushes += 1
        if self.config.crash_after_pushes and self.stats.pushes >= self.config.crash_after_pushes:
            log.error("fault injection: exiting after push %d, before commit", self.stats.pushes)
            os._exit(17)
        from kafka.errors import KafkaError

        try:
            for rejected in result.rejected:
                self.producer.send(self.config.dlq_topic, value=rejected.payload(),
                                   headers=[("reason", rejected.reason.encode())])
            if result.rejected:
                self.producer.flush(timeout=30)
        except KafkaError as exc:  # not committed: read the batch again, it is de-duplicated
            log.warning("could not write %d rejects to %s (%s); not committing, re-reading "
                        "the batch", len(result.rejected), self.config.dlq_topic, exc)
            self._rewind(records)
            self._stop.wait(_backoff(0, self.config))
            return
        for rejected in result.rejected:
            self.stats.dlq[rejected.reason] += 1
        self._commit(records)
        self.stats.consumed += len(records)
        self.stats.applied += result.applied
        self.stats.duplicates += result.duplicates
        self.stats.batches += 1
        self.stats.users_pushed += len(result.rows)
        self.stats.freshness_ms.extend(pushed_at * 1000 - r.timestamp for r in records)
        self.stats.last_batch_at = time.time()
        self.stats.batch_costs.append((len(records), (time.thread_time() - cpu) * 1000,
                                       (time.perf_counter() - wall) * 1000))

    def _rewind(self, records: list[Any]) -> None:
        from kafka.structs import TopicPartition

        first: dict = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            first[tp] = min(first.get(tp, r.offset), r.offset)
        for tp, offset in first.items():
            if tp in self.consumer.assignment():
                self.consumer.seek(tp, offset)

    def _commit(self, records: list[Any]) -> None:
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata, TopicPartition

        offsets: dict = {}
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, -1), r.offset + 1)
        try:
            self.consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
        except KafkaError as exc:  # a rebalance: the new owner replays, and skips what is applied
            log.warning("commit failed (%s); the batch will be redelivered and de-duplicated", exc)
