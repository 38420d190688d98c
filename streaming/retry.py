"""Retrying an operation while the service it needs is unavailable, with bounded backoff.

This module is the one place that classifies errors: :func:`broker_unavailable`
and :func:`store_unavailable` say which errors mean "the service cannot be
reached now" (wait and retry the same batch). Any other error of a batch is
a fault of its data, which the worker isolates and sends to the DLQ.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def broker_unavailable(exc: BaseException) -> bool:
    """Any Kafka client error: the brokers, the network or the group are not reachable."""
    from kafka.errors import KafkaError

    return isinstance(exc, KafkaError)


def store_unavailable(exc: BaseException) -> bool:
    """The online store (Redis, SQLite) or the offline log's disk cannot be used now.

    Redis: connection, timeout, loading, read-only replica, cluster down. SQLite:
    ``OperationalError`` (locked, unable to open, disk I/O). The offline parquet
    log: ``OSError`` (disk full, unmounted volume).
    """
    import redis.exceptions as redis_errors

    return isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError
                      | redis_errors.BusyLoadingError | redis_errors.ReadOnlyError
                      | redis_errors.ClusterDownError | redis_errors.TryAgainError
                      | sqlite3.OperationalError | OSError)


class Stopped(Exception):  # noqa: N818 - a signal, not an error
    """The worker was asked to stop while an operation was being retried."""


@dataclass
class Backoff:
    """Calls an operation until it succeeds, waiting twice as long after each failure.

    Args:
        initial_s: the first wait.
        max_s: the longest wait.
        stop: set by the worker's ``stop()``; ends the waiting with :class:`Stopped`.
        before_wait: called before each wait (the worker's liveness heartbeat).
    """

    initial_s: float
    max_s: float
    stop: threading.Event
    before_wait: Callable[[], None] | None = None

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failure in a row (0-based)."""
        return min(self.max_s, self.initial_s * 2 ** min(attempt, 32))

    def call(
        self,
        action: Callable[[], T],
        *,
        retryable: Callable[[BaseException], bool],
        unavailable: str,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> T:
        """``action()``'s result, retrying while ``retryable(error)``.

        Args:
            action: the operation.
            retryable: whether an error means the service is unavailable
                (:func:`broker_unavailable`, :func:`store_unavailable`); any
                other error propagates at once.
            unavailable: what is unavailable, for the log line
                ("<unavailable> unavailable (<error>); retrying in 2.0s").
            on_failure: called with each retryable error before waiting.

        Raises:
            Stopped: ``stop`` was set before the operation succeeded.
        """
        attempt = 0
        while not self.stop.is_set():
            try:
                return action()
            except Exception as exc:
                if not retryable(exc):
                    raise
                if on_failure is not None:
                    on_failure(exc)
                delay = self.delay(attempt)
                log.warning("%s unavailable (%s: %s); retrying in %.1fs", unavailable,
                            type(exc).__name__, exc, delay)
                attempt += 1
                if self.before_wait is not None:
                    self.before_wait()
                self.stop.wait(delay)
        raise Stopped
