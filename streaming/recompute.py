"""The touched users' new rows: features and state, from their stored and new events.

Users with stored events, or several new ones, go through one
:func:`ccrec.data.sequences.past_sequences` call for the batch, the code that
builds the training data. A user whose whole history is one new event (most
users of a stream with many users) has the features that call would give, by
its definition: one category interaction with that event's category, start and
item. Those rows are built column-wise without pandas, whose fixed cost (a few
milliseconds per call) is most of a small batch's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from ccrec.data.sequences import SequenceSpec, past_sequences, retained
from features import definitions as d
from features.online import ListColumn, ViewRows
from streaming.state import CodedEvent, UserState

_COUNTS = (d.NUM_PAST_EVENTS, d.NUM_PAST_CIS, d.NUM_PAST_CATEGORIES, d.LAST_TIMESTAMP)


class _Rows(NamedTuple):
    """Some users' rows, column by column, and their new states."""

    users: list[str]
    columns: dict
    states: dict[str, UserState]


def user_rows(
    new: dict[str, list[CodedEvent]], states: dict[str, UserState | None], spec: SequenceSpec,
    max_event_ids: int, now: float,
) -> tuple[ViewRows, dict[str, UserState]]:
    """One row per user of ``new`` (its new events, in offset order), and its new state."""
    single = spec.max_past >= 1 and spec.max_events >= 1
    first = [u for u in new if single and states[u] is None and len(new[u]) == 1]
    firsts = set(first)
    others = [u for u in new if u not in firsts]
    parts = []
    if others:
        parts.append(_recomputed(others, new, states, spec, max_event_ids))
    if first:
        parts.append(_first_events(first, new))
    keys = [u for part in parts for u in part.users]
    columns = {name: _concat([part.columns[name] for part in parts])
               for name in parts[0].columns}
    rows = ViewRows(keys, columns[d.LAST_TIMESTAMP], now, columns)
    return rows, {u: state for part in parts for u, state in part.states.items()}


def _position(state: UserState | None, arrivals: list[CodedEvent]) -> tuple[str, int, int]:
    """The applied position after ``arrivals``: a batch holds each partition's records in
    offset order, so the last arrival has its partition's highest offset."""
    last = arrivals[-1]
    offset = last.offset
    if state is not None and (state.topic_id, state.partition) == (last.topic_id, last.partition):
        offset = max(offset, state.offset)
    return last.topic_id, last.partition, offset


def _recomputed(
    users: list[str], new: dict[str, list[CodedEvent]], states: dict[str, UserState | None],
    spec: SequenceSpec, max_event_ids: int,
) -> _Rows:
    """Rows of ``users`` with one retained() and one past_sequences() call."""
    kept = retained(_events_frame(users, new, states), spec)
    # Every user keeps at least its new events (none is too old), so past has one row
    # per user, in the order of ``users`` (its index).
    past = past_sequences(kept, spec)
    if not np.array_equal(past["user"].to_numpy(), np.arange(len(users))):
        raise RuntimeError("past_sequences did not return one row per touched user")
    bounds = np.searchsorted(kept["user"].to_numpy(), np.arange(len(users) + 1))
    k_items, k_cats, k_times = (kept[c].to_numpy() for c in ("item", "category", "timestamp"))
    new_states = {}
    for index, user_id in enumerate(users):
        state, arrivals = states[user_id], new[user_id]
        lo, hi = bounds[index], bounds[index + 1]
        ids = (state.event_ids if state is not None else []) + [e.event_id for e in arrivals]
        new_states[user_id] = UserState(k_items[lo:hi], k_cats[lo:hi], k_times[lo:hi],
                                        ids[-max_event_ids:], *_position(state, arrivals))
    items_flat, item_counts = _item_sets(past[d.PAST_ITEMS])
    columns = {
        d.PAST_CATEGORIES: _list_column(past[d.PAST_CATEGORIES]),
        d.PAST_STARTS: _list_column(past[d.PAST_STARTS]),
        d.PAST_ITEMS_FLAT: items_flat, d.PAST_ITEM_COUNTS: item_counts,
        **{name: past[name].to_numpy(np.int64) for name in _COUNTS},
        d.WORKER_STATE: [s.to_bytes() for s in new_states.values()],
    }
    return _Rows(users, columns, new_states)


def _first_events(users: list[str], new: dict[str, list[CodedEvent]]) -> _Rows:
    """Rows of users whose history is one new event: one CI of one item."""
    events = [new[u][0] for u in users]
    n = len(events)
    items = np.fromiter((e.item for e in events), np.int64, n)
    cats = np.fromiter((e.category for e in events), np.int64, n)
    times = np.fromiter((e.timestamp for e in events), np.int64, n)
    each, ones = np.arange(n + 1), np.ones(n, np.int64)
    new_states = {
        u: UserState(items[k:k + 1], cats[k:k + 1], times[k:k + 1], [e.event_id],
                     e.topic_id, e.partition, e.offset)
        for k, (u, e) in enumerate(zip(users, events, strict=True))}
    columns = {
        d.PAST_CATEGORIES: ListColumn(cats, each), d.PAST_STARTS: ListColumn(times, each),
        d.PAST_ITEMS_FLAT: ListColumn(items, each), d.PAST_ITEM_COUNTS: ListColumn(ones, each),
        d.NUM_PAST_EVENTS: ones, d.NUM_PAST_CIS: ones, d.NUM_PAST_CATEGORIES: ones,
        d.LAST_TIMESTAMP: times,
        d.WORKER_STATE: [s.to_bytes() for s in new_states.values()],
    }
    return _Rows(users, columns, new_states)


def _concat(parts: list):
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], ListColumn):
        shift = np.cumsum([0] + [p.offsets[-1] for p in parts[:-1]])
        return ListColumn(np.concatenate([p.values for p in parts]),
                          np.concatenate([parts[0].offsets[:1]]
                                         + [p.offsets[1:] + s for p, s in zip(parts, shift,
                                                                             strict=True)]))
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [v for p in parts for v in p]


def _list_column(column: pd.Series) -> ListColumn:
    """A column of int arrays (past_sequences' lists) → :class:`ListColumn`."""
    arrays = column.to_numpy()
    lengths = np.fromiter(map(len, arrays), np.int64, len(arrays))
    values = np.concatenate(arrays).astype(np.int64) if len(arrays) else np.empty(0, np.int64)
    return ListColumn(values, np.r_[0, np.cumsum(lengths)])


def _item_sets(column: pd.Series) -> tuple[ListColumn, ListColumn]:
    """past_items (per user, one item array per CI) → the flat items and the CI sizes."""
    per_ci = [ci for cis in column.to_numpy() for ci in cis]
    sizes = np.fromiter(map(len, per_ci), np.int64, len(per_ci))
    cis_per_user = np.fromiter(map(len, column.to_numpy()), np.int64, len(column))
    ci_offsets = np.r_[0, np.cumsum(cis_per_user)]
    item_offsets = np.r_[0, np.cumsum(sizes)][ci_offsets]
    flat = np.concatenate(per_ci).astype(np.int64) if per_ci else np.empty(0, np.int64)
    return ListColumn(flat, item_offsets), ListColumn(sizes, ci_offsets)


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
