"""Reading a user's online features: the Feast store, or an in-memory table.

Both readers return :class:`UserFeatures` (indices as the models use them).
The Feast reader reads through :class:`features.store.UserFeatureReader`, so
feature names are never typed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ccrec.bundle import UserRequest


@dataclass(frozen=True)
class Popularity:
    """Live category popularity, as the stream worker counts it in the feature store.

    Args:
        categories: category indices.
        counts: the number of interactions with each.
    """

    categories: list[int]
    counts: list[int]

    def prior(self, num_categories: int) -> torch.Tensor | None:
        """[C+1] the counts normalised over the known categories; None if none is known."""
        prior = torch.zeros(num_categories + 1)
        for category, count in zip(self.categories, self.counts, strict=False):
            if 0 < category <= num_categories and count > 0:
                prior[category] += float(count)
        total = prior.sum()
        return prior / total if total > 0 else None


@dataclass(frozen=True)
class UserFeatures:
    """What the stages need about one user.

    Args:
        user: δ_t, the item lists of its category interactions and f_t.
        last_timestamp: epoch seconds of the user's latest applied event (0 = never).
        popularity: live category popularity, if the store has it.
    """

    user: UserRequest
    last_timestamp: int = 0
    popularity: Popularity | None = None


UNKNOWN = UserFeatures(UserRequest([], [], []))


class FeatureReader(Protocol):
    """Batched online feature read."""

    def read_many(self, user_ids: list[str]) -> list[UserFeatures]:
        """Features of each user (:data:`UNKNOWN` for a user never seen)."""

    def ping(self) -> bool:
        """Whether the online store answers."""


class MemoryFeatures:
    """An in-memory feature table (tests, the latency benchmark's control).

    Args:
        table: user id → features.
    """

    in_memory = True

    def __init__(self, table: dict[str, UserFeatures] | None = None) -> None:
        self.table = dict(table or {})

    def read_many(self, user_ids: list[str]) -> list[UserFeatures]:
        return [self.table.get(u, UNKNOWN) for u in user_ids]

    def ping(self) -> bool:
        return True

    @classmethod
    def from_prepared(cls, dataset_or_path: str | Path) -> MemoryFeatures:
        """Every user of a prepared data set, with the past of its latest example row (a
        training user has one row per rolling origin)."""
        from ccrec.data.prepared import load_prepared

        prepared = load_prepared(dataset_or_path)
        names = prepared.vocab["users"]
        latest = prepared.examples.sort_values("last_timestamp", kind="stable").drop_duplicates(
            "user", keep="last")
        table = {}
        for row in latest.itertuples():
            user = UserRequest([int(c) for c in row.past_categories],
                               [[int(i) for i in ci] for ci in row.past_items],
                               [int(f) for f in row.user_features])
            table[names[row.user]] = UserFeatures(user, int(row.last_timestamp))
        return cls(table)


@dataclass(frozen=True)
class FeastSettings:
    """Which Feast store to read.

    Args:
        environment: the Feast environment, i.e. its ``feature_store.yaml``
            (:data:`features.environments.ENVIRONMENTS`: sqlite, redis, production).
        root: the store root (``features/`` by default).
        project: replaces the environment's Feast project.
        redis_url: replaces a Redis online store's connection string.
    """

    environment: str = "sqlite"
    root: str | None = None
    project: str | None = None
    redis_url: str | None = None


class FeastFeatures:
    """The Feast online store through :mod:`features.store`.

    Args:
        settings: :class:`FeastSettings`.
    """

    def __init__(self, settings: FeastSettings) -> None:
        from features import store as fs

        root = Path(settings.root) if settings.root else fs.FEATURES_DIR
        self.store = fs.open_store(root, settings.environment, project=settings.project,
                                   redis_url=settings.redis_url, apply=False)
        self.reader = fs.UserFeatureReader(self.store)

    def read_many(self, user_ids: list[str]) -> list[UserFeatures]:
        from features import definitions as d

        rows = self.reader.read(user_ids)
        out = []
        for user_id in user_ids:
            row = rows[user_id]
            user = UserRequest([int(c) for c in row[d.PAST_CATEGORIES]],
                               [[int(i) for i in ci] for ci in row[d.PAST_ITEMS]],
                               [int(f) for f in row[d.USER_FEATURES]])
            popular = Popularity([int(c) for c in row.get(d.POPULAR_CATEGORIES) or []],
                                 [int(n) for n in row.get(d.POPULAR_COUNTS) or []])
            out.append(UserFeatures(user, int(row[d.LAST_TIMESTAMP]),
                                    popular if popular.categories else None))
        return out

    def ping(self) -> bool:
        try:
            self.reader.read(["__readyz__"])
            return True
        except Exception:
            return False


def reader_from_config(config: dict) -> FeatureReader:
    """A reader from a small config: ``{"source": "feast", "environment", "root",
    "project", "redis_url"}`` (:class:`FeastSettings`), or ``{"source": "prepared",
    "path"}`` (a prepared data set's users, in memory: benchmarks, tests)."""
    config = dict(config)
    source = config.pop("source", "feast")
    if source == "feast":
        return FeastFeatures(FeastSettings(**config))
    if source == "prepared":
        return MemoryFeatures.from_prepared(config["path"])
    raise ValueError(f"unknown feature source {source!r} (feast or prepared)")
