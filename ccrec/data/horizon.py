"""The prediction horizon: which later categories are a user's future γ_t.

A feature time (an *origin*: the cutoff, a rolling training boundary or a
replay point) splits a user's events into the past (strictly before it) and
the future (at or after it). The horizon says how much of the future counts:

* ``cis:N`` — the categories of the first N category interactions (CIs) that
  start at or after the origin, plus every CI that starts at the same moment
  as the N-th (a basket is one moment). This is the paper's short-horizon
  task (Tmall: ≤ 10 known and 3 future interactions). CIs are those of the
  user's whole history (:func:`category_interactions`), so a CI that began
  before the origin and continues after it belongs to the past: only a new
  interaction is a future one, as the live system sees it.
* ``days:D`` — the distinct categories of the events in ``[origin, origin + D days)``.
* ``all`` — the distinct categories of every event at or after the origin.

Everything is vectorised over origins with sorted keys and ``searchsorted``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ccrec.data.sequences import DAY, assign_category_interactions, concat_ranges, time_keys

_PATTERN = re.compile(r"^(?:cis:(?P<cis>[1-9]\d*)|days:(?P<days>\d+(?:\.\d+)?)|(?P<all>all))$")


class HorizonError(ValueError):
    """A horizon string that is not ``cis:N``, ``days:D`` or ``all``."""


@dataclass(frozen=True)
class Horizon:
    """A parsed horizon (see the module docstring).

    Args:
        kind: ``cis``, ``days`` or ``all``.
        size: N (CIs) or D (days); 0 for ``all``.
    """

    kind: Literal["cis", "days", "all"]
    size: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Horizon:
        match = _PATTERN.match(text.strip())
        if match is None:
            raise HorizonError(
                f"horizon {text!r} is not one of 'cis:N' (N ≥ 1), 'days:D' (D > 0) or 'all'")
        if match["cis"]:
            return cls("cis", float(int(match["cis"])))
        if match["days"]:
            days = float(match["days"])
            if days <= 0:
                raise HorizonError(f"horizon {text!r}: the number of days must be positive")
            return cls("days", days)
        return cls("all")

    def __str__(self) -> str:
        if self.kind == "cis":
            return f"cis:{int(self.size)}"
        if self.kind == "days":
            return f"days:{self.size:g}"
        return "all"


def category_interactions(events: pd.DataFrame, window_seconds: int) -> pd.DataFrame:
    """Every CI of the users' whole histories: ``user``, ``category``, ``start``,
    sorted by (user, start, category), the order of δ_t."""
    user = events["user"].to_numpy(np.int64)
    category = events["category"].to_numpy(np.int64)
    timestamp = events["timestamp"].to_numpy(np.int64)
    first = np.unique(assign_category_interactions(user, category, timestamp, window_seconds))
    cis = pd.DataFrame({"user": user[first], "category": category[first],
                        "start": timestamp[first]})
    return cis.sort_values(["user", "start", "category"], kind="stable").reset_index(drop=True)


def _distinct_lists(owner: np.ndarray, category: np.ndarray, num_owners: int) -> list:
    """Per owner, its distinct categories in order of first appearance (inputs are
    ordered by owner, then by time)."""
    firsts = ~pd.DataFrame({"o": owner, "c": category}).duplicated().to_numpy()
    owner, category = owner[firsts], category[firsts]
    bounds = np.searchsorted(owner, np.arange(num_owners + 1))
    return [category[bounds[i]:bounds[i + 1]] for i in range(num_owners)]


def _base_time(*times: np.ndarray) -> int:
    base = min(int(t.min()) for t in times if len(t))
    if max(int(t.max()) for t in times if len(t)) - base >= 2**31:
        raise HorizonError("timestamps span more than 68 years; they cannot be keyed")
    return base


def future_categories_at(
    events: pd.DataFrame, cis: pd.DataFrame, user: np.ndarray, origin: np.ndarray,
    horizon: Horizon,
) -> list[np.ndarray]:
    """γ at each (user[i], origin[i]): distinct future categories, earliest first.

    Args:
        events: integer events (user, item, category, timestamp) of the users.
        cis: their :func:`category_interactions`.
        user, origin: the feature times (epoch s), one per output element.
        horizon: how much of the future counts.

    Returns:
        One int64 array per origin (empty when nothing happens in the horizon).
    """
    user, origin = np.asarray(user, np.int64), np.asarray(origin, np.int64)
    if len(user) == 0:
        return []
    if horizon.kind == "cis":
        start = cis["start"].to_numpy(np.int64)
        base = _base_time(start, origin)
        key = time_keys(cis["user"].to_numpy(), start, base)
        first = np.searchsorted(key, time_keys(user, origin, base), side="left")
        user_end = np.searchsorted(key, (user + 1) << 32, side="left")
        nth = np.minimum(first + int(horizon.size) - 1, user_end - 1)
        present = first < user_end
        last_key = time_keys(user, np.where(present, start[np.minimum(nth, len(start) - 1)],
                                             origin), base)
        end = np.where(present, np.searchsorted(key, last_key, side="right"), first)
        owner, index = concat_ranges(first, end)
        return _distinct_lists(owner, cis["category"].to_numpy(np.int64)[index], len(user))
    return _event_future(events, user, origin, horizon)


def _event_future(events: pd.DataFrame, user: np.ndarray, origin: np.ndarray,
                  horizon: Horizon) -> list[np.ndarray]:
    """``days:D`` / ``all``: for every category the user ever had, its first event
    at or after the origin; the category counts if that event is in the horizon.
    Works on (origin × the user's categories) pairs, never on every later event."""
    ordered = events.sort_values(["user", "category", "timestamp"], kind="stable")
    ev_user = ordered["user"].to_numpy(np.int64)
    ev_cat = ordered["category"].to_numpy(np.int64)
    ts = ordered["timestamp"].to_numpy(np.int64)
    new_pair = np.r_[True, (ev_user[1:] != ev_user[:-1]) | (ev_cat[1:] != ev_cat[:-1])]
    ev_pair = np.cumsum(new_pair) - 1
    pair_user, pair_cat = ev_user[new_pair], ev_cat[new_pair]
    base = _base_time(ts, origin)
    key = time_keys(ev_pair, ts, base)
    owner, pair = concat_ranges(np.searchsorted(pair_user, user, side="left"),
                          np.searchsorted(pair_user, user, side="right"))
    at = np.searchsorted(key, time_keys(pair, origin[owner], base), side="left")
    found = at < len(key)
    found[found] &= ev_pair[at[found]] == pair[found]
    next_time = np.where(found, ts[np.minimum(at, len(ts) - 1)], 0)
    if horizon.kind == "days":
        found &= next_time < origin[owner] + int(horizon.size * DAY)
    owner, pair, next_time = owner[found], pair[found], next_time[found]
    order = np.lexsort((pair_cat[pair], next_time, owner))
    owner, cats = owner[order], pair_cat[pair][order]
    bounds = np.searchsorted(owner, np.arange(len(user) + 1))
    return [cats[bounds[i]:bounds[i + 1]] for i in range(len(user))]
