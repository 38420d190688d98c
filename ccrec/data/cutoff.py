"""Cutoff rules, and which users each rule keeps.

A user is kept (an example at their cutoff) when they have at least one event
strictly before the cutoff (a past) and at least one category in the horizon at
or after it (a future). :func:`qualification` counts, for a rule and a horizon,
how many users are kept and why the others are not; ``ccrec data check`` and
``ccrec data prepare`` report it, and preparation suggests the rule that keeps
more users when fewer than half qualify.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Protocol

import numpy as np
import pandas as pd

from ccrec.data.horizon import Horizon, future_categories_at
from ccrec.data.origins import boundaries


class CutoffRule(Protocol):
    """The fields of :class:`ccrec.data.prepare.PrepareConfig` a cutoff rule reads."""

    cutoff_mode: str
    cutoff: str | None
    future_fraction: float


def global_cutoff(events: pd.DataFrame, cutoff: str | None) -> int:
    """The global cutoff (epoch s): the ISO date, or the time by which 80 % of events happened."""
    if cutoff is not None:
        return int(pd.Timestamp(cutoff, tz="UTC").timestamp())
    return int(np.quantile(events["timestamp"].to_numpy(), 0.8))


def cutoffs(events: pd.DataFrame, cis: pd.DataFrame, rule: CutoffRule) -> pd.Series:
    """The cutoff time (epoch s) per user.

    ``per_user``: the CI boundary (distinct CI start time) that leaves the last
    ``future_fraction`` of the user's boundaries at or after the cutoff, and at
    least one before it. A cutoff on a boundary means a new interaction starts
    there, whatever the horizon.
    """
    if rule.cutoff_mode == "per_user":
        starts = boundaries(cis)
        position = starts.groupby("user", sort=True).cumcount().to_numpy()
        size = starts.groupby("user", sort=True)["start"].transform("size").to_numpy()
        first_future = np.floor(size * (1.0 - rule.future_fraction)).astype(np.int64)
        pick = starts[position == np.minimum(np.maximum(first_future, 1), size - 1)]
        return pick.set_index("user")["start"].astype(np.int64)
    when = global_cutoff(events, rule.cutoff)
    users = np.unique(events["user"].to_numpy())
    return pd.Series(when, index=pd.Index(users, name="user"), dtype=np.int64)


def describe_rule(events: pd.DataFrame, rule: CutoffRule) -> str:
    """The rule in words: ``global cutoff 2000-12-02`` or ``per-user cutoff (last 20 % …)``."""
    if rule.cutoff_mode == "per_user":
        return (f"per-user cutoff (the last {rule.future_fraction:.0%} of each user's "
                "category interactions in the future)")
    when = pd.Timestamp(global_cutoff(events, rule.cutoff), unit="s", tz="UTC")
    source = "" if rule.cutoff is not None else " (when 80% of events had happened)"
    return f"global cutoff {when:%Y-%m-%d %H:%M}{source}"


@dataclass(frozen=True)
class Qualification:
    """How many users one cutoff rule and horizon keep.

    Args:
        rule: the rule in words (:func:`describe_rule`).
        horizon: the horizon, e.g. ``cis:3``.
        users: every user in the events.
        kept: users with a past and a future at their cutoff.
        no_past: users without any event before their cutoff.
        no_future: users with a past but no category in the horizon after the cutoff.
    """

    rule: str
    horizon: str
    users: int
    kept: int
    no_past: int
    no_future: int

    @property
    def share(self) -> float:
        return self.kept / self.users if self.users else 0.0

    def reasons(self) -> str:
        """Why the other users were dropped, in words ("" when none was)."""
        parts = []
        if self.no_past:
            parts.append(f"{self.no_past} have no event before their cutoff")
        if self.no_future:
            parts.append(f"{self.no_future} have no category in the horizon "
                         f"({self.horizon}) at or after it")
        return "; ".join(parts)

    def summary(self) -> str:
        text = (f"{self.kept} of {self.users} users kept ({self.share:.0%}) with the "
                f"{self.rule} and horizon {self.horizon}")
        return f"{text}: {self.reasons()}" if self.reasons() else text

    def to_dict(self) -> dict:
        return asdict(self)


def qualification(events: pd.DataFrame, cis: pd.DataFrame, rule: CutoffRule,
                  horizon: Horizon) -> Qualification:
    """Count the users ``rule`` keeps with ``horizon`` (see the module docstring).

    A past at the cutoff is non-empty exactly when the user has an event before
    it (retention always keeps the latest one), so this matches the examples of
    :func:`ccrec.data.prepare.build_examples` without building them.
    """
    cut = cutoffs(events, cis, rule)
    users, times = cut.index.to_numpy(np.int64), cut.to_numpy(np.int64)
    first = events.groupby("user")["timestamp"].min().reindex(users).to_numpy(np.int64)
    has_past = first < times
    future = future_categories_at(events, cis, users, times, horizon)
    has_future = np.fromiter((len(f) > 0 for f in future), bool, len(future))
    return Qualification(
        rule=describe_rule(events, rule), horizon=str(horizon), users=len(users),
        kept=int((has_past & has_future).sum()), no_past=int((~has_past).sum()),
        no_future=int((has_past & ~has_future).sum()))


def alternatives(events: pd.DataFrame, cis: pd.DataFrame,
                 config) -> list[tuple[str, Qualification]]:
    """The other cutoff mode and the ``all`` horizon, each as the flags that choose it and
    the users it keeps, most users first. ``config`` is a ``PrepareConfig``."""
    other = "global" if config.cutoff_mode == "per_user" else "per_user"
    candidates = {f"--cutoff-mode {other}": replace(config, cutoff_mode=other)}
    if str(config.horizon) != "all":
        candidates["--future all"] = replace(config, future="all")
        candidates[f"--cutoff-mode {other} --future all"] = replace(
            config, cutoff_mode=other, future="all")
    found = [(flags, qualification(events, cis, rule, rule.horizon))
             for flags, rule in candidates.items()]
    return sorted(found, key=lambda pair: -pair[1].kept)


def better(current: Qualification,
           options: list[tuple[str, Qualification]]) -> tuple[str, Qualification] | None:
    """The option (flags, users kept) that keeps the most users, if it keeps more."""
    found = [(flags, q) for flags, q in options if q.kept > current.kept]
    return max(found, key=lambda pair: pair[1].kept) if found else None


def advice(current: Qualification, options: list[tuple[str, Qualification]]) -> str | None:
    """A warning with the fix when fewer than half of the users qualify (None otherwise)."""
    if current.share >= 0.5:
        return None
    text = (f"only {current.kept} of {current.users} users ({current.share:.0%}) have both a "
            f"past and a future with the {current.rule} and horizon {current.horizon}")
    best = better(current, options)
    if best is None:
        return text + "; no other cutoff rule keeps more (the events may span too little time)"
    return f"{text}; {best[0]} keeps {best[1].kept} ({best[1].share:.0%})"
