"""Which feature times (origins) each kind of user is seen at.

All three rules read the table of a user's category interactions (CIs) of
:func:`ccrec.data.horizon.category_interactions`; a *boundary* is a distinct
CI start time (several CIs starting at one moment — a basket — are one
boundary).

* :func:`rolling_origins` — a training user is an example at every boundary
  before their cutoff and at the cutoff itself, the latest ``cap`` of them.
  **Leakage rule:** no origin is later than the user's cutoff, so no past
  ever holds an event at or after the cutoff. The futures of the latest
  origins reach past the cutoff, exactly as the cutoff example's own future
  does; test users are other users, never trained on.
* :func:`newcomer_origins` — a cold test user is seen as a newcomer: the
  latest moment at which they had at most ``known`` CIs (0 is allowed: no
  history, only f_t), ``known`` drawn per user.
* :func:`replay_origins` — a test user is replayed at every boundary at or
  after their cutoff (the first ``cap``): the moment before each new CI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def boundaries(cis: pd.DataFrame) -> pd.DataFrame:
    """Distinct CI start times per user: ``user``, ``start``, ``before`` (CIs that
    started earlier), sorted by user, start."""
    per_time = cis.groupby(["user", "start"], sort=True).size().rename("n").reset_index()
    per_time["before"] = per_time.groupby("user")["n"].cumsum() - per_time["n"]
    return per_time.drop(columns="n")


def rolling_origins(cis: pd.DataFrame, cutoff: pd.Series, cap: int) -> pd.DataFrame:
    """The latest ``cap`` of {boundaries before the cutoff} ∪ {cutoff} per user.

    Args:
        cis: the users' CIs.
        cutoff: cutoff (epoch s) per user index; only these users get origins.
        cap: at most this many origins per user (≥ 1; 1 is the cutoff alone).
    """
    if cap < 1:
        raise ValueError(f"max_origins_per_user must be at least 1, got {cap}")
    starts = boundaries(cis[cis["user"].isin(cutoff.index)])
    starts = starts[starts["start"].to_numpy() < cutoff.reindex(starts["user"]).to_numpy()]
    origins = pd.concat([
        pd.DataFrame({"user": starts["user"].to_numpy(), "origin": starts["start"].to_numpy()}),
        pd.DataFrame({"user": cutoff.index.to_numpy(np.int64),
                      "origin": cutoff.to_numpy(np.int64)}),
    ], ignore_index=True).sort_values(["user", "origin"], kind="stable")
    from_end = origins.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
    return origins[from_end < cap].reset_index(drop=True)


def newcomer_origins(cis: pd.DataFrame, cutoff: pd.Series, known: pd.Series) -> pd.Series:
    """Per user, the latest moment no later than the cutoff with at most
    ``known[user]`` earlier CIs: a boundary, or the cutoff itself.

    A boundary always qualifies for ``known = 0`` (the user's first one), so
    every user gets an origin.
    """
    starts = boundaries(cis[cis["user"].isin(cutoff.index)])
    at_cutoff = cis[cis["user"].isin(cutoff.index)]
    before_cutoff = (at_cutoff["start"].to_numpy()
                     < cutoff.reindex(at_cutoff["user"]).to_numpy())
    counts = pd.Series(before_cutoff, index=at_cutoff["user"].to_numpy()).groupby(level=0).sum()
    candidates = pd.concat([
        starts[starts["start"].to_numpy() < cutoff.reindex(starts["user"]).to_numpy()],
        pd.DataFrame({"user": cutoff.index.to_numpy(np.int64),
                      "start": cutoff.to_numpy(np.int64),
                      "before": counts.reindex(cutoff.index).fillna(0).to_numpy(np.int64)}),
    ], ignore_index=True)
    allowed = candidates["before"].to_numpy() <= known.reindex(candidates["user"]).to_numpy()
    return candidates[allowed].groupby("user")["start"].max().astype(np.int64)


def replay_origins(cis: pd.DataFrame, cutoff: pd.Series, cap: int) -> pd.DataFrame:
    """The first ``cap`` boundaries at or after each user's cutoff: ``user``, ``origin``."""
    starts = boundaries(cis[cis["user"].isin(cutoff.index)])
    starts = starts[starts["start"].to_numpy() >= cutoff.reindex(starts["user"]).to_numpy()]
    first = starts.groupby("user", sort=False).cumcount().to_numpy() < cap
    return (starts[first].rename(columns={"start": "origin"})[["user", "origin"]]
            .reset_index(drop=True))
