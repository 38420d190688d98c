"""Retrying an operation while the service it needs is unavailable, with bounded backoff."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Stopped(Exception):  # noqa: N818 - a signal, not an error
    """The worker was asked to stop while an operation was being retried."""


@dataclass
class Backoff:
    """Calls an operation until it succeeds, waiting twice as long after each failure.

    Args:
        initial_s: the first wait.
        max_s: the longest wait.
        stop: set by the worker's ``stop()``; ends the waiting with :class:`Stopped`.
    """

    initial_s: float
    max_s: float
    stop: threading.Event

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failure in a row (0-based)."""
        return min(self.max_s, self.initial_s * 2 ** min(attempt, 32))

    def call(
        self,
        action: Callable[[], T],
        *,
        retryable: tuple[type[BaseException], ...],
        unavailable: str,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> T:
        """``action()``'s result, retrying on ``retryable`` errors.

        Args:
            action: the operation.
            retryable: the errors that mean the service is unavailable; any other
                error propagates at once.
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
            except retryable as exc:
                if on_failure is not None:
                    on_failure(exc)
                delay = self.delay(attempt)
                log.warning("%s unavailable (%s: %s); retrying in %.1fs", unavailable,
                            type(exc).__name__, exc, delay)
                attempt += 1
                self.stop.wait(delay)
        raise Stopped
