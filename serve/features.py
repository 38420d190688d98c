"""Reading a user's online features: the Feast store, or an in-memory table.

Both readers return :class:`UserFeatures` (indices as the models use them).
The Feast reader calls :func:`features.store.read_user_features`, the
streaming engineer's API, so feature names are never typed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class UserFeatures:
    """What the stages need about one user.

    Args:
        past_categories: δ_t, category indices, oldest first.
        past_items: the item indices of each past category interaction.
        user_features: f_t indices (0 = unknown).
        last_timestamp: epoch seconds of the user's latest applied event (0 = never).
        popular_categories / popular_counts: live category popularity (if the store has it).
    """

    past_categories: list[int] = field(default_factory=list)
    past_items: list[list[int]] = field(default_factory=list)
    user_features: list[int] = field(default_factory=list)
    last_timestamp: int = 0
    popular_categories: list[int] = field(default_factory=list)
    popular_counts: list[int] = field(default_factory=list)


class FeatureReader(Protocol):
    """Batched online feature read."""

    def read_many(self, user_ids: list[str]) -> list[UserFeatures]:
        """Features of each user (empty features for an unknown user)."""

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
        return [self.table.get(u) or UserFeatures() for u in user_ids]

    def ping(self) -> bool:
        return True


@dataclass(frozen=True)
class FeastSettings:
    """Where the Feast repository is.

    Args:
        root: the store root (``features/`` by default).
        online: ``sqlite`` or ``redis``.
        redis_url: ``host:port`` for Redis (default ``$CCREC_REDIS_URL`` / 127.0.0.1:6379).
        project: the Feast project.
    """

    root: str | None = None
    online: str = "sqlite"
    redis_url: str | None = None
    project: str = "ccrec"


class FeastFeatures:
    """The Feast online store through :mod:`features.store`.

    Args:
        settings: :class:`FeastSettings`.
    """

    def __init__(self, settings: FeastSettings) -> None:
        from features import store as fs

        self._fs = fs
        root = Path(settings.root) if settings.root else fs.FEATURES_DIR
        self.store = fs.open_store(root, settings.online, redis_url=settings.redis_url,  # type: ignore[arg-type]
                                   project=settings.project, apply=False)

    def read_many(self, user_ids: list[str]) -> list[UserFeatures]:
        from features import definitions as d

        rows = self._fs.read_user_features(self.store, user_ids)
        out = []
        for user_id in user_ids:
            row = rows[user_id]
            out.append(UserFeatures(
                past_categories=[int(c) for c in row[d.PAST_CATEGORIES]],
                past_items=[[int(i) for i in ci] for ci in row[d.PAST_ITEMS]],
                user_features=[int(f) for f in row[d.USER_FEATURES]],
                last_timestamp=int(row[d.LAST_TIMESTAMP]),
                popular_categories=[int(c) for c in row.get(d.POPULAR_CATEGORIES) or []],
                popular_counts=[int(c) for c in row.get(d.POPULAR_COUNTS) or []],
            ))
        return out

    def ping(self) -> bool:
        try:
            self._fs.read_user_features(self.store, ["__readyz__"])
            return True
        except Exception:
            return False


def synthetic_features(users: int = 1000, seed: int = 0, num_categories: int = 18,
                       past: int = 8, now: int | None = None) -> MemoryFeatures:
    """Reproducible users ``u0..u{n-1}`` with ``past`` category interactions each (benchmarks)."""
    import random
    import time

    rng = random.Random(seed)
    now = int(now or time.time())
    table = {}
    for i in range(users):
        cats = [rng.randint(1, num_categories) for _ in range(past)]
        items = [[rng.randint(1, 3000) for _ in range(rng.randint(1, 4))] for _ in cats]
        table[f"u{i}"] = UserFeatures(cats, items, [rng.randint(1, 40) for _ in range(3)],
                                      now - rng.randint(1, 3600))
    return MemoryFeatures(table)


def reader_from_config(config: dict) -> FeatureReader:
    """A reader from a small config: ``{"source": "feast", "root", "online", "redis_url",
    "project"}`` or ``{"source": "synthetic", "users", "seed"}`` (benchmarks, tests)."""
    config = dict(config)
    source = config.pop("source", "feast")
    if source == "feast":
        return FeastFeatures(FeastSettings(**config))
    if source == "synthetic":
        return synthetic_features(**config)
    raise ValueError(f"unknown feature source {source!r} (feast or synthetic)")
