"""The click-by-click replay: what the live system answers after each click.

For each test user, at every moment a new category interaction (CI) starts
at or after their cutoff (:func:`ccrec.data.origins.replay_origins`), the
features are :func:`ccrec.data.sequences.past_sequences` of every event
before that moment — the stream worker's code, so a replayed point sees what
serving would have seen — and the truth is the categories of the CIs that
start at that moment (``cis:1``: the next CI, with its basket). A user's
points are one unit for the bootstrap (clustered by user).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ccrec.data.examples import examples_at
from ccrec.data.horizon import Horizon, category_interactions
from ccrec.data.origins import replay_origins
from ccrec.data.prepared import PreparedData
from ccrec.data.sequences import SequenceSpec

#: At most this many replayed moments per user (the first ones after the cutoff).
MAX_POINTS_PER_USER = 20
REPLAY_HORIZON = Horizon("cis", 1)
TEST_SPLITS = ("warm_test", "cold_test")


def replay_examples(prepared: PreparedData, max_points_per_user: int = MAX_POINTS_PER_USER,
                    splits: tuple[str, ...] = TEST_SPLITS) -> pd.DataFrame:
    """One example per replayed moment of the users of ``splits``.

    Returns the columns of :data:`ccrec.data.examples.EXAMPLE_COLUMNS` plus
    ``cutoff`` (the user's) and ``split`` (``replay``), sorted by (user, origin).
    """
    spec = SequenceSpec(**prepared.meta.get("config", {}).get("sequence", {}))
    users = prepared.examples[prepared.examples["split"].isin(splits)]
    cutoff = users.groupby("user")["cutoff"].max()
    events = prepared.events()
    events = events[events["user"].isin(cutoff.index)].reset_index(drop=True)
    cis = category_interactions(events, spec.window_seconds)
    origins = replay_origins(cis, cutoff, max_points_per_user)
    width = len(users["user_features"].iloc[0]) if len(users) else 0
    features = np.zeros((int(cutoff.index.max()) + 1 if len(cutoff) else 0, width), np.int64)
    if len(users):
        features[users["user"].to_numpy()] = np.stack(users["user_features"].to_numpy())
    frame = examples_at(events, cis, features, origins["user"].to_numpy(),
                        origins["origin"].to_numpy(), spec, REPLAY_HORIZON)
    frame["cutoff"] = cutoff.reindex(frame["user"]).to_numpy()
    frame["split"] = "replay"
    return frame
