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
        max_event_bytes: larger messages are rejected ("oversized payload"); event
            times outside ccrec.schema's range are rejected ("timestamp out of range").
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
        state_cache_users: at most this many users' rows are kept (least recently
            used dropped first; about 1 KB per user of the data sets here).
        liveness_timeout_s: the liveness endpoint answers 503 when the worker loop
            has not run for this long (it runs at least every poll, and before each
            backoff wait, so this must exceed retry_max_s).
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
    max_event_ids: int = 256
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    fetch_max_wait_ms: int = 10
    bootstrap_timeout_ms: int = 30_000
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    cache_state: bool = True
    state_cache_users: int = 100_000
    liveness_timeout_s: float = 120.0
    sequence: SequenceSpec = field(default_factory=SequenceSpec)
    crash_after_pushes: int | None = None

    def __post_init__(self) -> None:
        if self.liveness_timeout_s <= self.retry_max_s:
            raise ValueError(f"liveness_timeout_s ({self.liveness_timeout_s:g}) must exceed "
                             f"retry_max_s ({self.retry_max_s:g}): a backoff wait is not a stall")
