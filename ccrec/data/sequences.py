"""The one feature computation: events → a user's past category interactions.

Batch preparation (training data) and the streaming worker (online features)
both call :func:`past_sequences` on the events they hold, so the two paths
cannot disagree (paper §6.1 preprocessing):

* **Category interaction (CI).** A user's events of one category form one CI
  while they fall within ``window`` of the CI's *first* event (inclusive: an
  event exactly 5 days after the start still joins). The next event after the
  window opens a new CI. A CI's item set is the distinct items of its events
  in order of first occurrence; its time is its first event's.
* **Retention.** Only a user's events within ``horizon`` of their latest
  event, and at most ``max_events`` of the latest, are used. The stream keeps
  exactly these events as its state, which is what makes the paths identical.
* **Past sequence δ_t.** The last ``k`` CIs ordered by (start time, category).

All steps are vectorised over users with numpy sorts and runs (no pandas
group-by, whose fixed cost per call would dominate the stream worker's small
batches): no Python loop runs per event or per user; the only loop runs once
per CI "round" (the largest number of CIs one user has in one category).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

DAY = 86_400


@dataclass(frozen=True)
class SequenceSpec:
    """How past category interactions are formed.

    Args:
        window_days: same-category events within this many days of a CI's
            first event join that CI (paper: 5).
        max_past: k, the number of most recent CIs kept.
        horizon_days: events older than this, relative to the user's latest
            event, are forgotten.
        max_events: at most this many latest events per user are kept.
    """

    window_days: float = 5.0
    max_past: int = 10
    horizon_days: float = 365.0
    max_events: int = 2000

    @property
    def window_seconds(self) -> int:
        return int(self.window_days * DAY)

    @property
    def horizon_seconds(self) -> int:
        return int(self.horizon_days * DAY)


def retained(events: pd.DataFrame, spec: SequenceSpec) -> pd.DataFrame:
    """The events a user's features depend on (the stream's state), sorted by user, time.

    ``events`` has integer columns user, item, category, timestamp.
    """
    kept = _retained_order(*(events[c].to_numpy() for c in ("user", "item", "category",
                                                              "timestamp")), spec)
    return events.iloc[kept].reset_index(drop=True)


def _groups(*sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each run of equal key tuples in the sorted keys."""
    n = len(sorted_keys[0])
    if not n:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    change = np.zeros(n - 1, bool)
    for key in sorted_keys:
        change |= key[1:] != key[:-1]
    starts = np.flatnonzero(np.r_[True, change])
    return starts, np.r_[starts[1:], n].astype(np.int64)


def _from_end(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each element of the runs, its position counted from its run's end (0 = last)."""
    return np.repeat(ends, ends - starts) - 1 - np.arange(ends[-1] if len(ends) else 0)


def _retained_order(user: np.ndarray, item: np.ndarray, category: np.ndarray,
                    timestamp: np.ndarray, spec: SequenceSpec) -> np.ndarray:
    """Indices of the retained events, in (user, timestamp, category, item) order (stable)."""
    order = np.lexsort((item, category, timestamp, user))
    starts, ends = _groups(user[order])
    # Sorted by time within a user, so a user's latest event is the last of its run.
    latest = np.repeat(timestamp[order][ends - 1], ends - starts)
    order = order[timestamp[order] >= latest - spec.horizon_seconds]
    return order[_from_end(*_groups(user[order])) < spec.max_events]


def assign_category_interactions(
    user: np.ndarray, category: np.ndarray, timestamp: np.ndarray, window_seconds: int
) -> np.ndarray:
    """For each event, the index (into the inputs) of the first event of its CI."""
    n = len(user)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((timestamp, category, user))
    u, c, t = user[order], category[order], timestamp[order]
    new_sequence = np.r_[True, (u[1:] != u[:-1]) | (c[1:] != c[:-1])]
    sequence = np.cumsum(new_sequence) - 1
    anchor = np.full(n, -1, dtype=np.int64)
    remaining = np.arange(n)
    while remaining.size:
        s = sequence[remaining]
        is_first = np.r_[True, s[1:] != s[:-1]]
        owner = np.cumsum(is_first) - 1
        first = remaining[is_first][owner]
        joins = t[remaining] - t[first] <= window_seconds
        anchor[remaining[joins]] = first[joins]
        remaining = remaining[~joins]
    result = np.empty(n, dtype=np.int64)
    result[order] = order[anchor]
    return result


#: The columns :func:`past_sequences` returns.
SEQUENCE_COLUMNS = (
    "user", "past_categories", "past_starts", "past_items", "num_past_events", "num_past_cis",
    "num_past_categories", "last_timestamp",
)


def _list_column(values: np.ndarray, offsets: np.ndarray) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values))


def past_sequences(events: pd.DataFrame, spec: SequenceSpec) -> pd.DataFrame:
    """Each user's past sequence δ_t with item sets, from that user's events.

    Args:
        events: integer columns user, item, category, timestamp (epoch s):
            everything known about the users up to the feature time.
        spec: the grouping and retention rules.

    Returns:
        One row per user (sorted by user): ``user``; ``past_categories``,
        ``past_starts`` and ``past_items`` (lists of the last k CIs, oldest
        first; ``past_items`` a list of item lists); ``num_past_events`` and
        ``num_past_cis`` (over the retained events, before truncation to k);
        ``num_past_categories`` (distinct); ``last_timestamp``.
    """
    columns = [events[c].to_numpy(np.int64) for c in ("user", "item", "category", "timestamp")]
    kept = _retained_order(*columns, spec)
    if not len(kept):
        return pd.DataFrame(columns=list(SEQUENCE_COLUMNS))
    user, item, category, timestamp = (column[kept] for column in columns)
    anchor = assign_category_interactions(user, category, timestamp, spec.window_seconds)

    # Distinct items per CI, in order of first occurrence (events are time-sorted per user).
    by_pair = np.lexsort((np.arange(len(item)), item, anchor))
    pair_starts, _ = _groups(anchor[by_pair], item[by_pair])
    first_of_pair = np.zeros(len(item), bool)
    first_of_pair[by_pair[pair_starts]] = True
    ci_events = np.flatnonzero(first_of_pair)
    ci_events = ci_events[np.argsort(anchor[ci_events], kind="stable")]
    anchors, counts = np.unique(anchor[ci_events], return_counts=True)
    item_offsets = np.r_[0, np.cumsum(counts)]

    # CIs by (user, start, category), the last k of each user kept.
    ci_user, ci_category, ci_start = user[anchors], category[anchors], timestamp[anchors]
    by_start = np.lexsort((ci_category, ci_start, ci_user))
    ci_starts, ci_ends = _groups(ci_user[by_start])
    recent = by_start[_from_end(ci_starts, ci_ends) < spec.max_past]

    # Nested item lists of the kept CIs, gathered with offsets (no per-CI loop).
    lengths = counts[recent]
    gather = np.repeat(item_offsets[recent], lengths) + (
        np.arange(lengths.sum()) - np.repeat(np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    )
    inner = _list_column(item[ci_events[gather]], np.r_[0, np.cumsum(lengths)])

    users, per_user = np.unique(ci_user[recent], return_counts=True)
    outer_offsets = np.r_[0, np.cumsum(per_user)]
    # Per-user statistics over the retained events (sorted by user): each user's run.
    starts, ends = _groups(user)
    run = np.searchsorted(user[starts], users)
    distinct = np.lexsort((category, user))
    pair_runs, _ = _groups(user[distinct], category[distinct])
    num_categories = np.bincount(np.searchsorted(user[starts], user[distinct][pair_runs]),
                                 minlength=len(starts))
    return pa.table(
        {
            "user": pa.array(users, pa.int64()),
            "past_categories": _list_column(ci_category[recent], outer_offsets),
            "past_starts": _list_column(ci_start[recent], outer_offsets),
            "past_items": pa.ListArray.from_arrays(pa.array(outer_offsets, pa.int32()), inner),
            "num_past_events": pa.array((ends - starts)[run], pa.int64()),
            "num_past_cis": pa.array((ci_ends - ci_starts)[
                np.searchsorted(ci_user[by_start][ci_starts], users)], pa.int64()),
            "num_past_categories": pa.array(num_categories[run], pa.int64()),
            "last_timestamp": pa.array(timestamp[ends - 1][run], pa.int64()),
        }
    ).to_pandas()


def time_keys(user: np.ndarray, time: np.ndarray, base: int) -> np.ndarray:
    """(user, time) as one sortable int64 (user in the high 32 bits, ``time - base``
    in the low ones), so that ``searchsorted`` finds a user's events around a time."""
    return (np.asarray(user).astype(np.int64) << 32) | (np.asarray(time).astype(np.int64) - base)


def concat_ranges(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ``range(starts[i], ends[i])``: the owner i and the index of every
    element (a vectorised gather of many slices)."""
    lengths = np.maximum(np.asarray(ends) - np.asarray(starts), 0)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, np.repeat(np.asarray(starts, np.int64), lengths) + within
