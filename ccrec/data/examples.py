"""Examples at feature times: δ_t before an origin, γ_t after it.

One function, :func:`examples_at`, builds every kind of example the project
uses — a test user at their cutoff, a training user at each rolling origin, a
replay point after each new category interaction — from the same two
ingredients:

* the past: :func:`ccrec.data.sequences.past_sequences` on exactly the events
  strictly before the origin (the code the stream worker runs, so a replayed
  point sees the features the live system would have served);
* the future: :func:`ccrec.data.horizon.future_categories_at` at that origin.

Many origins of one user are computed in one vectorised call: each origin's
events become a *virtual user* (its row number), sliced from the user's
time-ordered events without a per-origin Python loop, in chunks of bounded
size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccrec.data.horizon import Horizon, future_categories_at
from ccrec.data.sequences import (
    SEQUENCE_COLUMNS,
    SequenceSpec,
    concat_ranges,
    past_sequences,
    time_keys,
)

#: The columns of an example frame (the prepared ``examples.parquet`` adds ``split``
#: and ``cutoff``).
EXAMPLE_COLUMNS = (*SEQUENCE_COLUMNS, "origin", "future_categories", "user_features")
#: At most this many (event × origin) rows go through one ``past_sequences`` call.
CHUNK_EVENTS = 4_000_000


def _past_slices(events: pd.DataFrame, user: np.ndarray, origin: np.ndarray,
                 spec: SequenceSpec) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Events in retention order and, per origin, the [lo, hi) slice that
    ``past_sequences`` would keep of the user's events before the origin.

    The slice is the last ``max_events`` events before the origin in the order
    of :func:`ccrec.data.sequences.retained`; retention applied again to it
    keeps the same events, so the features are exactly those of the stream.
    """
    ordered = events.sort_values(["user", "timestamp", "category", "item"],
                                 kind="stable").reset_index(drop=True)
    ts = ordered["timestamp"].to_numpy(np.int64)
    base = min(int(ts.min()), int(origin.min()))
    key = time_keys(ordered["user"].to_numpy(), ts, base)
    hi = np.searchsorted(key, time_keys(user, origin, base), side="left")
    user_start = np.searchsorted(key, user << 32, side="left")
    lo = np.maximum(user_start, hi - spec.max_events)
    return ordered, lo, hi


def _empty_pasts(n: int) -> pd.DataFrame:
    empty = [np.zeros(0, np.int64) for _ in range(n)]
    return pd.DataFrame({
        "past_categories": empty, "past_starts": list(empty),
        "past_items": [[] for _ in range(n)], "num_past_events": np.zeros(n, np.int64),
        "num_past_cis": np.zeros(n, np.int64), "num_past_categories": np.zeros(n, np.int64),
        "last_timestamp": np.full(n, -1, np.int64),
    })


def pasts_at(events: pd.DataFrame, user: np.ndarray, origin: np.ndarray,
             spec: SequenceSpec, chunk_events: int = CHUNK_EVENTS) -> pd.DataFrame:
    """``past_sequences`` of each user at each origin, one row per origin (in order).

    A user with no event before the origin gets an empty past
    (``num_past_cis`` 0, ``last_timestamp`` −1).
    """
    user, origin = np.asarray(user, np.int64), np.asarray(origin, np.int64)
    out = _empty_pasts(len(user))
    if len(user) == 0 or events.empty:
        return out.assign(user=user)[list(SEQUENCE_COLUMNS)]
    ordered, lo, hi = _past_slices(events, user, origin, spec)
    columns = ordered[["item", "category", "timestamp"]]
    sizes = hi - lo
    chunk_of = np.cumsum(sizes) // max(chunk_events, 1)
    for chunk in np.unique(chunk_of):
        rows = np.flatnonzero(chunk_of == chunk)
        owner, index = concat_ranges(lo[rows], hi[rows])
        if len(index) == 0:
            continue
        virtual = columns.iloc[index].reset_index(drop=True).assign(user=rows[owner])
        past = past_sequences(virtual, spec)
        target = past["user"].to_numpy(np.int64)
        for name in out.columns:
            values = past[name].to_numpy()
            if values.dtype == object:
                series = out[name].to_numpy(object)
                series[target] = values
                out[name] = series
            else:
                out.loc[target, name] = values
    out.insert(0, "user", user)
    return out[list(SEQUENCE_COLUMNS)]


def examples_at(
    events: pd.DataFrame, cis: pd.DataFrame, features: np.ndarray, user: np.ndarray,
    origin: np.ndarray, spec: SequenceSpec, horizon: Horizon,
) -> pd.DataFrame:
    """One example per (user, origin) whose horizon holds at least one category.

    Args:
        events: integer events (user, item, category, timestamp).
        cis: :func:`ccrec.data.horizon.category_interactions` of ``events``.
        features: f_t indices per user index ([num_users, F]).
        user, origin: the feature times (epoch s); pairs must be unique.
        spec: grouping and retention of the past (shared with the stream).
        horizon: which later categories are the future.

    Returns:
        :data:`EXAMPLE_COLUMNS`, sorted by (user, origin). Pasts may be empty
        (a newcomer); callers that need a past filter on ``num_past_cis``.
    """
    user, origin = np.asarray(user, np.int64), np.asarray(origin, np.int64)
    future = future_categories_at(events, cis, user, origin, horizon)
    has_future = np.fromiter((len(f) > 0 for f in future), bool, len(future))
    user, origin = user[has_future], origin[has_future]
    frame = pasts_at(events, user, origin, spec)
    frame["origin"] = origin
    frame["future_categories"] = [f for f, keep in zip(future, has_future, strict=True)
                                  if keep]
    frame["user_features"] = list(features[user]) if len(user) else []
    return frame.sort_values(["user", "origin"], kind="stable").reset_index(drop=True)
