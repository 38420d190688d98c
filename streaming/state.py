"""A user's stream data: the coded events, and the state they build, stored as one value.

The state lives in the user's ``user_category_sequence`` row next to the
features (one write stores both) as the one ``worker_state`` value: a small
binary record (below) rather than seven typed features, because the online
store's cost is per stored value (a SQLite row, a Redis hash field), and with
many users the state's values outnumbered the features'.

Layout (little-endian): header ``magic "CCS1", n events (u32), partition
(i64), offset (i64), n ids (u32), topic id bytes (u32)``; then the n items,
n categories and n timestamps (i64 each), the byte length of each event id
(u32), the topic id and the event ids (UTF-8).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

#: Earlier than any event: the latest event time of a user with none.
NEVER = -(2**62)
MAGIC = b"CCS1"
_HEADER = struct.Struct("<4sIqqII")


class CodedEvent(NamedTuple):
    """One valid event, in the vocabulary's codes, and where it was read."""

    user_id: str
    item: int
    category: int
    timestamp: int  # epoch s
    event_id: str  # the de-duplication id (Event.dedup_id)
    topic_id: str  # the topic's incarnation ("" when the broker gives no topic ids)
    partition: int
    offset: int


@dataclass
class UserState:
    """One user's retained events and applied position.

    Args:
        items / categories / timestamps: the retained events (the batch path's
            :func:`~ccrec.data.sequences.retained`), in time order.
        event_ids: the most recent event ids (de-duplication).
        topic_id: the incarnation of the topic the offset belongs to ("" when unknown).
        partition / offset: the last applied Kafka position.
    """

    items: np.ndarray
    categories: np.ndarray
    timestamps: np.ndarray
    event_ids: list[str]
    topic_id: str
    partition: int
    offset: int

    @property
    def latest(self) -> int:
        return int(self.timestamps.max()) if len(self.timestamps) else NEVER

    def applied(self, topic_id: str, partition: int, offset: int) -> bool:
        """Whether the row already holds the record at this Kafka position."""
        return topic_id == self.topic_id and partition == self.partition and offset <= self.offset

    def to_bytes(self) -> bytes:
        ids = [i.encode() for i in self.event_ids]
        topic = self.topic_id.encode()
        return b"".join([
            _HEADER.pack(MAGIC, len(self.items), self.partition, self.offset, len(ids),
                         len(topic)),
            self.items.astype("<i8").tobytes(), self.categories.astype("<i8").tobytes(),
            self.timestamps.astype("<i8").tobytes(),
            np.fromiter(map(len, ids), "<u4", len(ids)).tobytes(), topic, *ids])

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserState:
        """The state :meth:`to_bytes` wrote (ValueError if ``raw`` is not one)."""
        if raw[:4] != MAGIC:
            raise ValueError(f"not a stream worker state (starts {raw[:4]!r})")
        _, n, partition, offset, n_ids, topic_size = _HEADER.unpack_from(raw)
        at = _HEADER.size
        arrays = []
        for _ in range(3):
            arrays.append(np.frombuffer(raw, "<i8", n, at).astype(np.int64))
            at += 8 * n
        sizes = np.frombuffer(raw, "<u4", n_ids, at).tolist()
        at += 4 * n_ids
        topic_id = raw[at:at + topic_size].decode()
        at += topic_size
        event_ids = []
        for size in sizes:
            event_ids.append(raw[at:at + size].decode())
            at += size
        if at != len(raw):
            raise ValueError(f"a stream worker state of {len(raw)} bytes holds {at}")
        return cls(*arrays, event_ids, topic_id, partition, offset)


class StateCache:
    """The states a worker wrote, least recently used first, at most ``capacity``."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[str, UserState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._states

    def get(self, user_id: str) -> UserState | None:
        state = self._states.get(user_id)
        if state is not None:
            self._states.move_to_end(user_id)
        return state

    def update(self, states: dict[str, UserState]) -> None:
        self._states.update(states)
        for user_id in states:
            self._states.move_to_end(user_id)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def clear(self) -> None:
        self._states.clear()
