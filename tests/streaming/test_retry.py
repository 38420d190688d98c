"""The one retry helper: backoff, which errors it retries, stopping."""

from __future__ import annotations

import logging
import threading

import pytest

from streaming.retry import Backoff, Stopped, broker_unavailable, store_unavailable


class RecordedStop(threading.Event):
    """A stop event whose waits return at once and are recorded."""

    def __init__(self, stop_after_waits: int | None = None) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.stop_after_waits = stop_after_waits

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        if self.stop_after_waits is not None and len(self.waits) >= self.stop_after_waits:
            self.set()
        return self.is_set()


def failing(times: int, error: BaseException, result: object = "done"):
    calls = []

    def action():
        calls.append(1)
        if len(calls) <= times:
            raise error
        return result

    return action, calls


def refused(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError)


def test_delays_double_up_to_the_maximum() -> None:
    backoff = Backoff(0.5, 5.0, threading.Event())
    assert [backoff.delay(a) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.delay(10_000) == 5.0


def test_retries_until_success_and_logs_each_failure(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="streaming.retry")
    stop = RecordedStop()
    action, calls = failing(3, ConnectionError("refused"))
    seen, beats = [], []
    got = Backoff(0.5, 1.5, stop, before_wait=lambda: beats.append(len(stop.waits))).call(
        action, retryable=refused, unavailable="the store", on_failure=seen.append)
    assert got == "done" and len(calls) == 4
    assert stop.waits == [0.5, 1.0, 1.5]
    assert beats == [0, 1, 2]  # one heartbeat before each wait
    assert [str(e) for e in seen] == ["refused"] * 3
    assert [r.getMessage() for r in caplog.records] == [
        f"the store unavailable (ConnectionError: refused); retrying in {d}s"
        for d in ("0.5", "1.0", "1.5")]


def test_other_errors_are_not_retried() -> None:
    stop = RecordedStop()
    action, calls = failing(1, KeyError("poison"))
    with pytest.raises(KeyError):
        Backoff(0.5, 1.0, stop).call(action, retryable=refused, unavailable="x")
    assert len(calls) == 1 and stop.waits == []


def test_stop_ends_the_retries() -> None:
    stop = RecordedStop(stop_after_waits=2)
    action, calls = failing(100, ConnectionError("down"))
    with pytest.raises(Stopped):
        Backoff(0.1, 1.0, stop).call(action, retryable=refused, unavailable="x")
    assert len(calls) == 2 and stop.waits == [0.1, 0.2]
    stopped = threading.Event()
    stopped.set()
    action, calls = failing(0, ConnectionError("never raised"))
    with pytest.raises(Stopped):
        Backoff(0.1, 1.0, stopped).call(action, retryable=refused, unavailable="x")
    assert calls == []


def test_only_unavailable_services_are_retried() -> None:
    """The classification: services that cannot be reached now, not faults of the data."""
    import sqlite3

    import pandas as pd
    import redis.exceptions as redis_errors
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    for unavailable in (redis_errors.ConnectionError("refused"), redis_errors.TimeoutError(),
                        redis_errors.BusyLoadingError(), sqlite3.OperationalError("locked"),
                        OSError(28, "No space left on device")):
        assert store_unavailable(unavailable), unavailable
    for data_fault in (ValueError("x"), KeyError("x"), OverflowError("date value out of range"),
                       pd.errors.OutOfBoundsDatetime("1500-01-01"), sqlite3.IntegrityError(),
                       UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
                       redis_errors.DataError("bad type")):
        assert not store_unavailable(data_fault), data_fault
    assert broker_unavailable(KafkaConnectionError()) and broker_unavailable(KafkaTimeoutError())
    assert not broker_unavailable(ValueError("x"))
