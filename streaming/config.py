"""The stream worker's settings, in one dataclass (the CLI reads its defaults from here).

This module imports neither Kafka nor Feast, so that ``ccrec stream --help``
stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ccrec.data.sequences import SequenceSpec
from streaming.events import DLQ_TOPIC, TOPIC


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
        retry_initial_s / retry_max_s: the exponential backoff while the broker or
            the feature store is unavailable.
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
