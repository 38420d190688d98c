"""The feature updater: a batch of Kafka records → the Feast rows to push (no Kafka here).

Per batch:

1. validate each message (size, the :class:`ccrec.schema.Event` schema with its
   timestamp range, known item and category); rejects carry their reason;
2. read the touched users' rows (one batched read, or the rows this updater
   computed itself since its last partition assignment, a bounded LRU cache);
3. reject events older than the user's latest minus the retention horizon,
   then drop events already applied: offset ≤ the row's applied offset in the
   same topic incarnation and partition, or an event id the row has seen;
4. append the new events to each user's retained events and recompute every
   touched user at once (:mod:`streaming.recompute`: the shared
   :func:`ccrec.data.sequences.past_sequences`);
5. return one row per user with the features *and* the state (retained events,
   applied position, recent event ids), column by column, so that one write
   stores both.

Every record of a batch gets exactly one :class:`Outcome`: applied, a
duplicate, or the DLQ (with a reason). The worker (:mod:`streaming.worker`)
pushes the rows, sends the DLQ records, then commits.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ccrec.schema import TIMESTAMP_RANGE_ERROR, EventValidationError, parse_event
from features import definitions as d
from features.online import OnlineRows, ViewRows
from streaming.config import WorkerConfig
from streaming.events import Vocabulary
from streaming.recompute import user_rows
from streaming.state import NEVER, CodedEvent, StateCache, UserState


class Record(Protocol):
    """What the updater reads of a Kafka record (kafka-python's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: int  # ms, set by the producer


class Outcome(StrEnum):
    """What became of one record. Every record has exactly one."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # its effect is in the stored row already
    DLQ = "dlq"  # rejected, with a reason


@dataclass
class Rejected:
    """A message for the DLQ, with the reason it was rejected."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    value: bytes | None

    @classmethod
    def of(cls, record: Record, reason: str, detail: str) -> Rejected:
        return cls(reason, detail, record.topic, record.partition, record.offset, record.value)

    def payload(self, limit: int = 16 * 1024) -> bytes:
        """The DLQ message: reason, detail, source position, the value (``limit`` bytes)."""
        value = self.value or b""
        return json.dumps({
            "reason": self.reason, "detail": self.detail,
            "source": {"topic": self.topic, "partition": self.partition, "offset": self.offset},
            "size": len(value), "payload": value[:limit].decode("utf-8", errors="replace"),
            "truncated": len(value) > limit,
        }).encode()


@dataclass
class BatchResult:
    """What one batch gives: rows to push, rejects, each record's outcome, the new states.

    ``outcomes[i]`` is the outcome of the batch's ``i``-th record; the DLQ ones
    are ``rejected``, in the same order.
    """

    rows: ViewRows | None
    rejected: list[Rejected]
    outcomes: list[Outcome]
    states: dict[str, UserState]

    @property
    def applied(self) -> int:
        return self.outcomes.count(Outcome.APPLIED)

    @property
    def duplicates(self) -> int:
        return self.outcomes.count(Outcome.DUPLICATE)

    @classmethod
    def all_rejected(cls, records: list[Record], reason: str, detail: str) -> BatchResult:
        return cls(None, [Rejected.of(r, reason, detail) for r in records],
                   [Outcome.DLQ] * len(records), {})


class FeatureUpdater:
    """Validates a batch of messages and computes the rows to push.

    Args:
        online: the ``user_category_sequence`` rows (reads the state not cached).
        vocab: item and category vocabularies.
        config: validation, retention and cache settings.
    """

    def __init__(self, online: OnlineRows, vocab: Vocabulary, config: WorkerConfig) -> None:
        self.online, self.vocab, self.config = online, vocab, config
        self.cache = StateCache(config.state_cache_users)
        #: topic → its incarnation (Kafka topic id), set by the worker on assignment.
        self.topic_ids: dict[str, str] = {}

    def validate(self, record: Record, now: float) -> CodedEvent | Rejected:
        """The coded event, or why it is rejected. Never raises."""
        value = record.value
        if value is None:
            return Rejected.of(record, "malformed", "empty message")
        if len(value) > self.config.max_event_bytes:
            return Rejected.of(record, "oversized payload",
                               f"{len(value)} bytes > {self.config.max_event_bytes}")
        try:
            event = parse_event(value, source=f"{record.topic}[{record.partition}]", now=now)
        except EventValidationError as exc:
            reason = "timestamp out of range" if exc.kind == TIMESTAMP_RANGE_ERROR else "malformed"
            return Rejected.of(record, reason, str(exc))
        except Exception as exc:  # noqa: BLE001 - one message's fault: the DLQ, not a crash
            return Rejected.of(record, "invalid event", f"{type(exc).__name__}: {exc}")
        item = self.vocab.items.get(event.item_id)
        if item is None:
            return Rejected.of(record, "unknown item", event.item_id)
        category = self.vocab.categories.get(event.category_id)
        if category is None:
            return Rejected.of(record, "unknown category", event.category_id)
        return CodedEvent(event.user_id, item, category, event.epoch_seconds, event.dedup_id,
                          self.topic_ids.get(record.topic, ""), record.partition, record.offset)

    def load_states(self, user_ids: list[str]) -> dict[str, UserState | None]:
        """Each user's stored state (None for a new user), from the cache or the store."""
        found: dict[str, UserState | None] = {}
        missing = []
        for user_id in user_ids:
            state = self.cache.get(user_id)
            if state is None:
                missing.append(user_id)
            else:
                found[user_id] = state
        if missing:
            stored = self.online.read(missing, (d.WORKER_STATE,))
            found.update((u, UserState.from_bytes(v[d.WORKER_STATE]) if v else None)
                         for u, v in zip(missing, stored, strict=True))
        return found

    def process(self, records: list[Record], now: float | None = None) -> BatchResult:
        """Validate, de-duplicate and recompute; returns the rows to push and every outcome.

        A message's content never makes it raise (a bad one gets a DLQ outcome);
        errors of the store read propagate.
        """
        now = time.time() if now is None else now
        horizon = self.config.sequence.horizon_seconds
        outcomes: list[Outcome] = [Outcome.APPLIED] * len(records)
        rejected: list[tuple[int, Rejected]] = []
        valid: list[tuple[int, CodedEvent]] = []
        for index, record in enumerate(records):
            outcome = self.validate(record, now)
            if isinstance(outcome, Rejected):
                rejected.append((index, outcome))
            else:
                valid.append((index, outcome))
        states = self.load_states(list(dict.fromkeys(e.user_id for _, e in valid)))

        latest: dict[str, int] = {}  # per user: the latest event time, stored or new
        for _, event in valid:
            known = latest.get(event.user_id)
            if known is None:
                state = states[event.user_id]
                known = state.latest if state is not None else NEVER
            latest[event.user_id] = max(known, event.timestamp)
        # Per user: the new events that are neither too old nor applied already. "Too
        # old" comes first: it depends on the latest time only, which a redelivery of
        # the batch finds unchanged, so a reject is a reject again (never a duplicate
        # whose DLQ message was lost with a crash before the DLQ send).
        new: dict[str, list[CodedEvent]] = {}
        seen: dict[str, set[str]] = {}
        for index, event in valid:
            if event.timestamp < latest[event.user_id] - horizon:
                rejected.append((index, Rejected.of(
                    records[index], "too old", f"{event.timestamp} is older than the user's "
                    f"latest event {latest[event.user_id]} minus the "
                    f"{self.config.sequence.horizon_days:g}-day horizon")))
                continue
            state = states[event.user_id]
            ids = seen.get(event.user_id)
            if ids is None:
                ids = seen[event.user_id] = set(state.event_ids) if state is not None else set()
            if (state is not None and state.applied(event.topic_id, event.partition, event.offset)
                    or event.event_id in ids):
                outcomes[index] = Outcome.DUPLICATE
                continue
            ids.add(event.event_id)
            new.setdefault(event.user_id, []).append(event)
        rejected.sort(key=lambda pair: pair[0])
        for index, _ in rejected:
            outcomes[index] = Outcome.DLQ
        rows, new_states = (user_rows(new, states, self.config.sequence,
                                      self.config.max_event_ids, now) if new else (None, {}))
        return BatchResult(rows, [r for _, r in rejected], outcomes, new_states)

    def remember(self, states: dict[str, UserState]) -> None:
        """Keep the states just written (when ``cache_state``), instead of reading them back."""
        if self.config.cache_state:
            self.cache.update(states)

    def forget(self) -> None:
        """Drop the cached states (a rebalance: another worker may write these users now)."""
        self.cache.clear()
