"""The stream worker: Kafka click events → :class:`~streaming.updater.FeatureUpdater` → Feast.

Per micro-batch (one ``poll``): the updater validates, de-duplicates and
recomputes the touched users; the worker pushes their rows (offline log, then
online), writes the rejects to the DLQ and checks that the broker took them,
and only then commits the offsets.

A crash anywhere before the commit makes Kafka redeliver the batch; the
updater skips what the stored rows already hold, so nothing is applied twice
and nothing is lost (at-least-once delivery, idempotent application).
An unavailable broker or store is retried with bounded backoff
(:class:`streaming.retry.Backoff`); nothing is committed meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from feast import FeatureStore

from features.store import push_rows
from streaming.broker import KafkaSettings
from streaming.config import WorkerConfig
from streaming.events import Vocabulary
from streaming.retry import Backoff, Stopped
from streaming.updater import SEQUENCE_PUSH, BatchResult, FeatureUpdater, Record, Rejected

log = logging.getLogger(__name__)

#: Exit status of the fault injection (``WorkerConfig.crash_after_pushes``).
CRASH_EXIT_STATUS = 17


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


class StreamWorker:
    """A consumer-group worker that keeps the Feast features fresh.

    Args:
        settings: Kafka brokers and client settings.
        store: the Feast store to push to.
        vocab: item and category vocabularies.
        config: see :class:`~streaming.config.WorkerConfig`.

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
        self.backoff = Backoff(self.config.retry_initial_s, self.config.retry_max_s, self._stop)
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

    @property
    def _broker(self) -> str:
        return f"Kafka broker at {self.settings.bootstrap_servers}"

    def _open_clients(self) -> tuple[Any, Any]:
        """The consumer (subscribed) and the DLQ producer."""
        from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer

        worker = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                worker.updater.forget()

            def on_partitions_assigned(self, assigned):
                worker.updater.forget()
                worker.assignment = set(assigned)
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
        try:
            consumer.subscribe([self.config.topic], listener=Listener())
            producer = KafkaProducer(**self.settings.config(), linger_ms=5, acks="all")
        except BaseException:
            consumer.close(autocommit=False)
            raise
        return consumer, producer

    def run(self) -> None:
        """Consume, apply and commit until stopped."""
        from kafka.errors import KafkaError

        try:
            self.consumer, self.producer = self.backoff.call(
                self._open_clients, retryable=(KafkaError,), unavailable=self._broker)
            reported = time.monotonic()
            while not self.stopping:
                if time.monotonic() - reported >= 30:
                    reported = time.monotonic()
                    log.info("stream worker: %s", self.stats.as_dict())
                polled = self.backoff.call(
                    lambda: self.consumer.poll(timeout_ms=self.config.poll_timeout_ms,
                                               max_records=self.config.batch_size),
                    retryable=(KafkaError,), unavailable=self._broker)
                records = [r for batch in polled.values() for r in batch]
                if records:
                    self._handle(records)
        except Stopped:  # stop() came while waiting for the broker or the store
            pass
        finally:
            log.info("stream worker stopped: %s", self.stats.as_dict())
            if self.consumer is not None:
                self.consumer.close(autocommit=False)
            if self.producer is not None:
                self.producer.close(timeout=5)

    # -- one batch -------------------------------------------------------------------------
    def _handle(self, records: list[Record]) -> None:
        """Apply and push one batch, write its rejects to the DLQ, then commit."""
        from kafka.errors import KafkaError

        if self.stats.first_batch_at is None:
            self.stats.first_batch_at = time.time()
        cpu, wall = time.thread_time(), time.perf_counter()
        result = self.backoff.call(
            lambda: self._apply(records),
            # Any failure is taken for an unavailable store: the batch is retried and
            # not committed, so nothing is lost.
            retryable=(Exception,), unavailable="feature store",
            on_failure=self._store_failed)
        pushed_at = time.time()
        self.updater.remember(result.states)
        self.stats.pushes += 1
        if self.config.crash_after_pushes and self.stats.pushes >= self.config.crash_after_pushes:
            log.error("fault injection: exiting after push %d, before commit", self.stats.pushes)
            os._exit(CRASH_EXIT_STATUS)
        if result.rejected:
            self.backoff.call(lambda: self._send_to_dlq(result.rejected), retryable=(KafkaError,),
                              unavailable=f"DLQ topic {self.config.dlq_topic} on {self._broker}")
        self._commit(records)
        self.stats.consumed += len(records)
        self.stats.applied += result.applied
        self.stats.duplicates += result.duplicates
        self.stats.dlq.update(r.reason for r in result.rejected)
        self.stats.batches += 1
        self.stats.users_pushed += len(result.rows)
        self.stats.freshness_ms.extend(pushed_at * 1000 - r.timestamp for r in records)
        self.stats.last_batch_at = time.time()
        self.stats.batch_costs.append((len(records), (time.thread_time() - cpu) * 1000,
                                       (time.perf_counter() - wall) * 1000))

    def _apply(self, records: list[Record]) -> BatchResult:
        result = self.updater.process(records)
        push_rows(self.updater.store, SEQUENCE_PUSH, result.rows)
        return result

    def _store_failed(self, exc: BaseException) -> None:
        self.stats.store_failures += 1
        self.updater.forget()  # the cached rows may not have been written

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
