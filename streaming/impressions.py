"""The impression log: every recommendation served, produced to Kafka off the request path.

A host calls :meth:`ImpressionLog.offer` with each answer it returns. The call
only appends to a bounded in-memory buffer (no I/O, no lock held for long), so
request latency does not depend on the broker. A daemon thread takes what the
buffer holds, produces it to :data:`IMPRESSIONS_TOPIC` through one
:class:`streaming.events.EventProducer` (``acks=all``) and waits for the
broker's acknowledgements before it takes the next batch. A slow or absent
broker therefore fills the buffer; an offer to a full buffer is dropped and
counted, never blocked on. Each impression ends in exactly one outcome:

* ``produced`` — the broker acknowledged it;
* ``dropped`` — the buffer was full when it was offered;
* ``failed`` — the producer gave up on it (the broker did not acknowledge
  within the producer's timeouts).

Messages are JSON objects of :class:`Impression`, keyed by ``user_id`` (one
user's impressions stay in one partition, in order), like the click events.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from streaming.broker import KafkaSettings
from streaming.events import DEFAULT_PARTITIONS, EventProducer, ensure_topics

log = logging.getLogger(__name__)

IMPRESSIONS_TOPIC = "ccrec.recommendations"
#: Impressions held while the broker is slow; more are dropped (and counted).
DEFAULT_CAPACITY = 10_000
OUTCOMES = ("produced", "dropped", "failed")


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Impression:
    """One recommendation served.

    Args:
        request_id: unique per answer.
        user_id: the user.
        model_version: the bundle that ranked.
        categories: category ids, best first; scores: the score of each.
        feature_timestamp: epoch seconds of the latest event the features include.
        time: epoch seconds when it was served.
        fallback: the answer was the popularity fallback (feature store down).
    """

    request_id: str
    user_id: str
    model_version: str
    categories: list[str]
    scores: list[float]
    feature_timestamp: int | None
    time: float = field(default_factory=time.time)
    fallback: bool = False

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, value: bytes | str | dict) -> Impression:
        """From a message of :data:`IMPRESSIONS_TOPIC`.

        Raises:
            ValueError: not an impression.
        """
        data = value if isinstance(value, dict) else json.loads(value)
        try:
            return cls(str(data["request_id"]), str(data["user_id"]), str(data["model_version"]),
                       [str(c) for c in data["categories"]], [float(s) for s in data["scores"]],
                       None if data.get("feature_timestamp") is None
                       else int(data["feature_timestamp"]),
                       float(data["time"]), bool(data.get("fallback", False)))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an impression: {exc!r}") from exc


class ImpressionLog:
    """A bounded buffer of impressions and the thread that produces them.

    Args:
        settings: where the brokers are.
        capacity: impressions held at most (buffered, not yet handed to the producer).
        batch: the thread hands at most this many to the producer, then waits for
            their acknowledgements.
        count: ``count(outcome, n)`` for each outcome (e.g. a Prometheus counter's
            ``labels(outcome).inc``); also kept in :attr:`counts`.
        topic: the topic (default :data:`IMPRESSIONS_TOPIC`).
        retry_s: wait between attempts to reach an absent broker.
        linger_s: the thread gathers impressions this long before producing them (the
            online accuracy join waits longer for them: its grace).
        **producer: extra KafkaProducer settings.
    """

    def __init__(self, settings: KafkaSettings, capacity: int = DEFAULT_CAPACITY,
                 batch: int = 500, count: Callable[[str, int], None] | None = None,
                 topic: str = IMPRESSIONS_TOPIC, retry_s: float = 1.0, linger_s: float = 0.2,
                 **producer: Any) -> None:
        if capacity < 1 or batch < 1:
            raise ValueError("capacity and batch must be at least 1")
        self.settings, self.topic, self.capacity, self.batch = settings, topic, capacity, batch
        self.retry_s, self.linger_s = retry_s, linger_s
        self.producer_options = {"linger_ms": 5, "request_timeout_ms": 10_000,
                                 "max_block_ms": 10_000, **producer}
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._count = count
        self._buffer: deque[Impression] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._producer: EventProducer | None = None
        self._thread = threading.Thread(target=self._run, name="ccrec-impressions", daemon=True)
        self._thread.start()

    # --- the request path -------------------------------------------------------------------
    def offer(self, impression: Impression) -> bool:
        """Buffer one impression without waiting; False when the buffer is full (dropped)."""
        with self._wake:
            if len(self._buffer) >= self.capacity or self._stopping:
                self._record("dropped", 1)
                return False
            self._buffer.append(impression)
            if len(self._buffer) == 1 or len(self._buffer) == self.batch:
                self._wake.notify()  # the thread waits for the first, or lingers for a batch
            return True

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # --- the producing thread ---------------------------------------------------------------
    def _record(self, outcome: str, n: int) -> None:
        if n:
            self.counts[outcome] += n  # one writer each: offer (dropped, locked), the thread
            if self._count is not None:
                self._count(outcome, n)

    def _connect(self) -> EventProducer | None:
        try:
            ensure_topics(self.settings, DEFAULT_PARTITIONS, topics=(self.topic,))
        except Exception as exc:  # e.g. no right to create topics: they exist, or the send says
            log.warning("impression log: cannot ensure topic %s: %s", self.topic, exc)
        try:
            return EventProducer(self.settings, topic=self.topic, **self.producer_options)
        except Exception as exc:  # no broker yet: keep buffering, try again
            log.warning("impression log: no broker at %s (%s); retrying in %.0f s",
                        self.settings.bootstrap_servers, exc, self.retry_s)
            return None

    def _take(self) -> list[Impression]:
        with self._wake:
            while not self._buffer and not self._stopping:
                self._wake.wait()
            # Gather for up to linger_s: fewer, larger produce requests (CPU per impression).
            deadline = time.monotonic() + self.linger_s
            while len(self._buffer) < self.batch and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(left)
            return [self._buffer.popleft() for _ in range(min(self.batch, len(self._buffer)))]

    def _run(self) -> None:
        while True:
            while self._producer is None and not self._stopping:
                self._producer = self._connect()
                if self._producer is None:
                    with self._wake:
                        self._wake.wait(self.retry_s)
            taken = self._take()
            if not taken:
                return  # stopping, nothing left
            if self._producer is None:  # stopped before any broker answered
                self._record("failed", len(taken))
                continue
            self._produce(self._producer, taken)

    def _produce(self, producer: EventProducer, taken: list[Impression]) -> None:
        futures = []
        for impression in taken:
            try:
                futures.append(producer.send(impression.to_wire()))
            except Exception:  # the producer refused it (e.g. no metadata in max_block_ms)
                log.warning("impression log: the producer refused an impression", exc_info=True)
        try:
            producer.flush(None)  # every send ends acknowledged or failed
        except Exception:
            log.exception("impression log: flush failed")
        produced = 0
        for future in futures:
            try:
                future.get(timeout=0.1)
                produced += 1
            except Exception:  # not acknowledged within the producer's timeouts
                pass
        self._record("produced", produced)
        self._record("failed", len(taken) - produced)

    def close(self, timeout: float = 10.0) -> None:
        """Produce what is buffered (at most ``timeout`` s), then stop."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout)
        if self._producer is not None:
            self._producer.close()
            self._producer = None


def impression_log_from_env(bootstrap_servers: str | None, enabled: bool,
                            count: Callable[[str, int], None] | None = None,
                            topic: str = IMPRESSIONS_TOPIC) -> ImpressionLog | None:
    """The impression log of a host, or None: disabled, or no broker configured
    (``bootstrap_servers`` None: ``$KAFKA_BOOTSTRAP_SERVERS``)."""
    bootstrap_servers = bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not enabled:
        return None
    if not bootstrap_servers:
        log.warning("impression log off: no Kafka bootstrap servers configured")
        return None
    return ImpressionLog(KafkaSettings.from_env(bootstrap_servers), count=count, topic=topic)


def enabled_in_env() -> bool:
    """``$CCREC_IMPRESSIONS``: on unless 0, false, off or no."""
    return os.environ.get("CCREC_IMPRESSIONS", "1").strip().lower() not in ("0", "false",
                                                                           "off", "no")
