"""The stream worker: Kafka click events → :class:`~streaming.updater.FeatureUpdater` → Feast.

Per micro-batch (one ``poll``): the updater validates, de-duplicates and
recomputes the touched users; the worker pushes their rows (offline log, then
online), writes the rejects to the DLQ and checks that the broker took them,
and only then commits the offsets.

The invariant: every record of a committed batch is **applied**, a
**duplicate** (its effect is already stored), or in the **DLQ** with a reason
(:class:`~streaming.updater.Outcome`, one per record). Nothing else commits.

* A failure caused by the data of one record never stops the stream: the
  updater rejects a bad message itself, and any other error of a batch that
  is not an unavailable service makes the worker split the batch until the
  record at fault is alone; that record goes to the DLQ ("processing error").
* An unavailable broker or store (:mod:`streaming.retry` classifies) is
  retried with bounded backoff; nothing is committed meanwhile.
* A crash anywhere before the commit makes Kafka redeliver the batch; the
  updater skips what the stored rows already hold, so nothing is applied twice
  and nothing is lost (at-least-once delivery, idempotent application).
* The stored offsets belong to the topic's incarnation (its Kafka topic id):
  after a topic or broker is recreated, the new offsets are not compared with
  the old ones.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from feast import FeatureStore

from features.online import OnlineRows
from features.store import SEQUENCE_VIEW, push_view_rows
from streaming.broker import KafkaSettings
from streaming.config import WorkerConfig
from streaming.events import Vocabulary
from streaming.health import Liveness
from streaming.retry import Backoff, Stopped, broker_unavailable, store_unavailable
from streaming.updater import BatchResult, FeatureUpdater, Record, Rejected

log = logging.getLogger(__name__)

#: Exit status of the fault injection (``WorkerConfig.crash_after_pushes``).
CRASH_EXIT_STATUS = 17
#: A topic id that means "none" (brokers before Kafka 2.8 send it, or nothing).
NO_TOPIC_ID = "00000000-0000-0000-0000-000000000000"


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
    isolated: int = 0  # batches split to find the record at fault
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
            "store_failures": self.store_failures, "isolated": self.isolated,
        }


class StreamWorker:
    """A consumer-group worker that keeps the Feast features fresh.

    Args:
        settings: Kafka brokers and client settings.
        store: the Feast store to push to.
        vocab: item and category vocabularies.
        config: see :class:`~streaming.config.WorkerConfig`.
        liveness: the heartbeat the loop beats (default: a new one; the CLI serves it).

    ``run()`` blocks until ``stop()`` (from another thread or a signal handler);
    ``start()`` runs it in a daemon thread. :meth:`process` applies one batch
    without Kafka.
    """

    def __init__(
        self, settings: KafkaSettings, store: FeatureStore, vocab: Vocabulary,
        config: WorkerConfig | None = None, liveness: Liveness | None = None,
    ) -> None:
        self.settings, self.config = settings, config or WorkerConfig()
        self.online = OnlineRows(store, store.get_feature_view(SEQUENCE_VIEW))
        self.updater = FeatureUpdater(self.online, vocab, self.config)
        self.stats = Stats()
        self.liveness = liveness or Liveness(self.config.liveness_timeout_s)
        self._stop = threading.Event()
        self.backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s, self._stop,
                               before_wait=self.liveness.beat)
        self._thread: threading.Thread | None = None
        self.assignment: set = set()
        self._reassigned = False  # the topic ids must be looked up again
        self._last_offsets: dict[tuple[str, int], int] = {}
        self.consumer = self.producer = self.admin = None
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

    @property
    def _broker(self) -> str:
        return f"Kafka broker at {self.settings.bootstrap_servers}"

    def _open_clients(self) -> tuple[Any, Any, Any]:
        """The consumer (subscribed), the DLQ producer and an admin client (topic ids)."""
        from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer

        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                worker.updater.forget()

            def on_partitions_assigned(self, assigned):
                worker.updater.forget()
                worker.assignment = set(assigned)
                worker._reassigned = True
                log.info("assigned partitions %s", sorted(p.partition for p in assigned))

        consumer = KafkaConsumer(
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
        producer = admin = None
        try:
            consumer.subscribe([self.config.topic], listener=Listener())
            producer = KafkaProducer(**self.settings.config(), linger_ms=5, acks="all")
            admin = KafkaAdminClient(**self.settings.config())
        except BaseException:
            _close(consumer, producer, admin)
            raise
        return consumer, producer, admin

    def run(self) -> None:
        """Consume, apply and commit until stopped."""
        # The loop allocates many short-lived objects per batch: the interpreter's
        # objects so far (Feast, the registry, modules) skip the garbage collector's
        # full passes, and young collections run every 50,000 allocations, not 700.
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        try:
            self.consumer, self.producer, self.admin = self.backoff.call(
                self._open_clients, retryable=broker_unavailable, unavailable=self._broker)
            reported = time.monotonic()
            while not self.stopping:
                self.liveness.beat()
                if time.monotonic() - reported >= 30:
                    reported = time.monotonic()
                    log.info("stream worker: %s", self.stats.as_dict())
                polled = self.backoff.call(
                    lambda: self.consumer.poll(timeout_ms=self.config.poll_timeout_ms,
                                               max_records=self.config.batch_size),
                    retryable=broker_unavailable, unavailable=self._broker)
                records = [r for batch in polled.values() for r in batch]
                if records:
                    self._handle(records)
        except Stopped:  # stop() came while waiting for the broker or the store
            pass
        finally:
            log.info("stream worker stopped: %s", self.stats.as_dict())
            _close(self.consumer, self.producer, self.admin)

    # -- one batch -------------------------------------------------------------------------
    def _handle(self, records: list[Record]) -> None:
        """Apply and push one batch, write its rejects to the DLQ, then commit."""
        if self.stats.first_batch_at is None:
            self.stats.first_batch_at = time.time()
        cpu, wall = time.thread_time(), time.perf_counter()
        if self._reassigned or self._offsets_went_back(records):
            self.updater.topic_ids = self.backoff.call(
                self._topic_ids, retryable=broker_unavailable, unavailable=self._broker)
            self._reassigned = False
        result = self.process(records)
        pushed_at = time.time()
        if result.rejected:
            self.backoff.call(lambda: self._send_to_dlq(result.rejected),
                              retryable=broker_unavailable,
                              unavailable=f"DLQ topic {self.config.dlq_topic} on {self._broker}")
        self._commit(records)
        self.stats.consumed += len(records)
        self.stats.applied += result.applied
        self.stats.duplicates += result.duplicates
        self.stats.dlq.update(r.reason for r in result.rejected)
        self.stats.batches += 1
        self.stats.freshness_ms.extend(pushed_at * 1000 - r.timestamp for r in records)
        self.stats.last_batch_at = time.time()
        self.stats.batch_costs.append((len(records), (time.thread_time() - cpu) * 1000,
                                       (time.perf_counter() - wall) * 1000))

    def process(self, records: list[Record]) -> BatchResult:
        """Apply ``records`` (validate, recompute, push): one outcome per record.

        Never raises for a record's content: an error that is not an unavailable
        store splits the batch in halves, applied in order, until the record at
        fault is alone, and that record goes to the DLQ. An unavailable store is
        retried (raises :class:`~streaming.retry.Stopped` if the worker stops).
        """
        try:
            return self.backoff.call(lambda: self._apply(records), retryable=store_unavailable,
                                     unavailable="feature store", on_failure=self._store_failed)
        except Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - the data of some record: isolate it
            if len(records) == 1:
                record = records[0]
                log.warning("%s[%d]@%d failed (%s: %s); sent to the DLQ", record.topic,
                            record.partition, record.offset, type(exc).__name__, exc)
                return BatchResult.all_rejected(records, "processing error",
                                                f"{type(exc).__name__}: {exc}")
            self.stats.isolated += 1
            log.warning("a batch of %d records failed (%s: %s); isolating the record at fault",
                        len(records), type(exc).__name__, exc)
            half = len(records) // 2
            first, second = self.process(records[:half]), self.process(records[half:])
            return BatchResult(None, first.rejected + second.rejected,
                               first.outcomes + second.outcomes, {**first.states, **second.states})

    def _apply(self, records: list[Record]) -> BatchResult:
        result = self.updater.process(records)
        if result.rows is not None:
            push_view_rows(self.online, result.rows)
            self.stats.users_pushed += len(result.rows)
        self.updater.remember(result.states)
        self.stats.pushes += 1
        if self.config.crash_after_pushes and self.stats.pushes >= self.config.crash_after_pushes:
            log.error("fault injection: exiting after push %d, before commit", self.stats.pushes)
            os._exit(CRASH_EXIT_STATUS)
        return result

    def _store_failed(self, exc: BaseException) -> None:
        self.stats.store_failures += 1
        self.updater.forget()  # the cached rows may not have been written

    def _offsets_went_back(self, records: list[Record]) -> bool:
        """Whether a partition's offsets restarted without a rebalance (topic recreated)."""
        went_back = False
        for r in records:
            key = (r.topic, r.partition)
            if r.offset <= self._last_offsets.get(key, -1):
                went_back = True
            self._last_offsets[key] = r.offset
        return went_back

    def _topic_ids(self) -> dict[str, str]:
        """The events topic's incarnation: its Kafka topic id ("" if the broker has none)."""
        described = self.admin.describe_topics([self.config.topic])
        ids = {t["name"]: str(t.get("topic_id") or "") for t in described}
        return {name: "" if topic_id == NO_TOPIC_ID else topic_id for name, topic_id in ids.items()}

    def _send_to_dlq(self, rejected: list[Rejected]) -> None:
        """Send the rejects and wait until the broker has every one (or raise its error)."""
        futures = [self.producer.send(self.config.dlq_topic, value=r.payload(),
                                      headers=[("reason", r.reason.encode())]) for r in rejected]
        self.producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)

    def _commit(self, records: list[Record]) -> None:
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


def _close(consumer: Any, producer: Any, admin: Any) -> None:
    if consumer is not None:
        consumer.close(autocommit=False)
    if producer is not None:
        producer.close(timeout=5)
    if admin is not None:
        admin.close()
