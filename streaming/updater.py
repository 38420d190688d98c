"""The feature updater: a batch of Kafka records → the Feast rows to push (no Kafka here).

Per batch:

1. validate each message (size, the :class:`ccrec.schema.Event` schema, known
   item and category, not in the future); rejects carry their reason;
2. read the touched users' rows (one ``get_online_features`` call, or the rows
   this updater computed itself since its last partition assignment);
3. drop events already applied: offset ≤ the row's applied offset in the same
   partition, or an event id the row has seen;
4. append the new events to each user's retained events and recompute every
   touched user at once with the shared :func:`ccrec.data.sequences.past_sequences`;
5. return one row per user with the features *and* the state (retained events,
   applied offset, recent event ids), so that one write stores both.

The worker (:mod:`streaming.worker`) pushes the rows, then commits.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import numpy as np
import pandas as pd
from feast import FeatureStore

from ccrec.data.sequences import past_sequences, retained
from ccrec.schema import EventValidationError, parse_event
from features import definitions as d
from features.store import read_state, sequence_columns
from streaming.config import WorkerConfig
from streaming.events import Vocabulary

#: The push source the updater's rows go to.
SEQUENCE_PUSH = d.user_category_sequence_push.name
#: Earlier than any event: the latest event time of a user with none.
NEVER = -(2**62)


class Record(Protocol):
    """What the updater reads of a Kafka record (kafka-python's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: int  # ms, set by the producer


class CodedEvent(NamedTuple):
    """One valid event, in the vocabulary's codes, and where it was read."""

    user_id: str
    item: int
    category: int
    timestamp: int  # epoch s
    event_id: str  # the de-duplication id (Event.dedup_id)
    partition: int
    offset: int


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
class UserState:
    """One user's retained events and applied position (the stored row's state part)."""

    items: np.ndarray
    categories: np.ndarray
    timestamps: np.ndarray
    event_ids: list[str]
    partition: int
    offset: int

    @classmethod
    def from_row(cls, data: dict[str, list], i: int) -> UserState | None:
        """Row ``i`` of :func:`features.store.read_state`'s answer; None for a new user."""
        if data[d.LOG_ITEMS][i] is None:
            return None
        return cls(
            items=np.asarray(data[d.LOG_ITEMS][i], np.int64),
            categories=np.asarray(data[d.LOG_CATEGORIES][i], np.int64),
            timestamps=np.asarray(data[d.LOG_TIMESTAMPS][i], np.int64),
            event_ids=list(data[d.LOG_EVENT_IDS][i] or []),
            partition=int(data[d.APPLIED_PARTITION][i]),
            offset=int(data[d.APPLIED_OFFSET][i]),
        )

    @property
    def latest(self) -> int:
        return int(self.timestamps.max()) if len(self.timestamps) else NEVER

    def applied(self, event: CodedEvent) -> bool:
        """Whether the row already holds ``event`` by its Kafka position."""
        return event.partition == self.partition and event.offset <= self.offset


@dataclass
class BatchResult:
    """What one batch gives: rows to push, rejects, counts, the users' new states."""

    rows: pd.DataFrame
    rejected: list[Rejected]
    applied: int
    duplicates: int
    states: dict[str, UserState]


class FeatureUpdater:
    """Validates a batch of messages and computes the rows to push.

    Args:
        store: the Feast store (reads state when it is not cached).
        vocab: item and category vocabularies.
        config: validation and retention settings.
    """

    def __init__(self, store: FeatureStore, vocab: Vocabulary, config: WorkerConfig) -> None:
        self.store, self.vocab, self.config = store, vocab, config
        self.cache: dict[str, UserState] = {}

    def validate(self, record: Record, now: float) -> CodedEvent | Rejected:
        """The coded event, or why it is rejected."""
        value = record.value
        if value is None:
            return Rejected.of(record, "malformed", "empty message")
        if len(value) > self.config.max_event_bytes:
            return Rejected.of(record, "oversized payload",
                               f"{len(value)} bytes > {self.config.max_event_bytes}")
        try:
            event = parse_event(value, source=f"{record.topic}[{record.partition}]")
        except EventValidationError as exc:
            return Rejected.of(record, "malformed", str(exc))
        item = self.vocab.items.get(event.item_id)
        if item is None:
            return Rejected.of(record, "unknown item", event.item_id)
        category = self.vocab.categories.get(event.category_id)
        if category is None:
            return Rejected.of(record, "unknown category", event.category_id)
        timestamp = event.epoch_seconds
        if timestamp > now + self.config.future_tolerance_s:
            return Rejected.of(record, "future timestamp", event.timestamp.isoformat())
        return CodedEvent(event.user_id, item, category, timestamp, event.dedup_id,
                          record.partition, record.offset)

    def load_states(self, user_ids: list[str]) -> dict[str, UserState | None]:
        """Each user's stored state (None for a new user), from the cache or the store."""
        found: dict[str, UserState | None] = {u: self.cache[u] for u in user_ids
                                               if u in self.cache}
        missing = [u for u in user_ids if u not in found]
        if missing:
            data = read_state(self.store, missing)
            found.update((u, UserState.from_row(data, i)) for i, u in enumerate(missing))
        return found

    def process(self, records: list[Record], now: float | None = None) -> BatchResult:
        """Validate, de-duplicate and recompute; returns the rows to push."""
        now = time.time() if now is None else now
        horizon = self.config.sequence.horizon_seconds
        rejected: list[Rejected] = []
        valid: list[tuple[Record, CodedEvent]] = []
        for record in records:
            outcome = self.validate(record, now)
            if isinstance(outcome, Rejected):
                rejected.append(outcome)
            else:
                valid.append((record, outcome))
        states = self.load_states(list(dict.fromkeys(e.user_id for _, e in valid)))

        latest: dict[str, int] = {}  # per user: the latest event time, stored or new
        for _, event in valid:
            state = states[event.user_id]
            known = latest.get(event.user_id, state.latest if state is not None else NEVER)
            latest[event.user_id] = max(known, event.timestamp)
        # Per user: the new events that are neither applied already nor too old.
        new: dict[str, list[CodedEvent]] = {}
        seen: dict[str, set[str]] = {}
        duplicates = 0
        for record, event in valid:
            state = states[event.user_id]
            ids = seen.get(event.user_id)
            if ids is None:
                ids = seen[event.user_id] = set(state.event_ids) if state is not None else set()
            if (state is not None and state.applied(event)) or event.event_id in ids:
                duplicates += 1
                continue
            ids.add(event.event_id)
            if event.timestamp < latest[event.user_id] - horizon:
                rejected.append(Rejected.of(
                    record, "too old", f"{event.timestamp} is older than the user's latest "
                    f"event {latest[event.user_id]} minus the "
                    f"{self.config.sequence.horizon_days:g}-day horizon"))
                continue
            new.setdefault(event.user_id, []).append(event)
        applied = sum(len(v) for v in new.values())
        rows, new_states = self._recompute(new, states, now) if new else (pd.DataFrame(), {})
        return BatchResult(rows, rejected, applied, duplicates, new_states)

    def _recompute(
        self, new: dict[str, list[CodedEvent]], states: dict[str, UserState | None], now: float
    ) -> tuple[pd.DataFrame, dict[str, UserState]]:
        """All touched users' retained events and features, with one past_sequences call."""
        spec = self.config.sequence
        users = list(new)
        kept = retained(_events_frame(users, new, states), spec)
        rows = sequence_columns(past_sequences(kept, spec))  # sorted by user index
        bounds = np.searchsorted(kept["user"].to_numpy(), np.arange(len(users) + 1))
        k_items, k_cats, k_times = (kept[c].to_numpy() for c in ("item", "category", "timestamp"))
        new_states: dict[str, UserState] = {}
        for index, user_id in enumerate(users):
            state, arrivals = states[user_id], new[user_id]
            lo, hi = bounds[index], bounds[index + 1]
            last = arrivals[-1]
            ids = (state.event_ids if state is not None else []) + [e.event_id for e in arrivals]
            offset = max(e.offset for e in arrivals if e.partition == last.partition)
            if state is not None and state.partition == last.partition:
                offset = max(offset, state.offset)
            new_states[user_id] = UserState(
                k_items[lo:hi].copy(), k_cats[lo:hi].copy(), k_times[lo:hi].copy(),
                ids[-self.config.max_event_ids:], last.partition, offset)
        in_rows = [users[i] for i in rows.pop("user").to_numpy()]
        written = [new_states[u] for u in in_rows]
        rows.insert(0, d.USER_ID, in_rows)
        rows[d.LOG_ITEMS] = [s.items.tolist() for s in written]
        rows[d.LOG_CATEGORIES] = [s.categories.tolist() for s in written]
        rows[d.LOG_TIMESTAMPS] = [s.timestamps.tolist() for s in written]
        rows[d.LOG_EVENT_IDS] = [s.event_ids for s in written]
        rows[d.APPLIED_PARTITION] = np.asarray([s.partition for s in written], np.int64)
        rows[d.APPLIED_OFFSET] = np.asarray([s.offset for s in written], np.int64)
        rows[d.EVENT_TIMESTAMP] = pd.to_datetime(rows[d.LAST_TIMESTAMP], unit="s", utc=True)
        rows[d.CREATED] = pd.Timestamp(datetime.fromtimestamp(now, UTC))
        return rows, new_states

    def remember(self, states: dict[str, UserState]) -> None:
        """Keep the states just written (when ``cache_state``), instead of reading them back."""
        if self.config.cache_state:
            self.cache.update(states)

    def forget(self) -> None:
        """Drop the cached states (a rebalance: another worker may write these users now)."""
        self.cache.clear()


def _events_frame(
    users: list[str], new: dict[str, list[CodedEvent]], states: dict[str, UserState | None]
) -> pd.DataFrame:
    """The users' stored retained events plus their new ones; ``user`` is the index in users."""
    arrivals = [e for user_id in users for e in new[user_id]]
    code = {user_id: i for i, user_id in enumerate(users)}
    n = len(arrivals)
    columns = {
        "user": [np.fromiter((code[e.user_id] for e in arrivals), np.int64, n)],
        "item": [np.fromiter((e.item for e in arrivals), np.int64, n)],
        "category": [np.fromiter((e.category for e in arrivals), np.int64, n)],
        "timestamp": [np.fromiter((e.timestamp for e in arrivals), np.int64, n)],
    }
    for index, user_id in enumerate(users):
        state = states[user_id]
        if state is not None:
            columns["user"].append(np.full(len(state.items), index, np.int64))
            columns["item"].append(state.items)
            columns["category"].append(state.categories)
            columns["timestamp"].append(state.timestamps)
    return pd.DataFrame({name: np.concatenate(parts) for name, parts in columns.items()})
