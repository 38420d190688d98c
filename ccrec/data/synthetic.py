"""Synthetic prepared data sets for tests, debug runs and benchmarks (no downloads).

One generator draws every synthetic user: :func:`generate` asks a
:class:`Pattern` what the user did (past category interactions, user
features) and what comes next (the future categories), then lays the users
out as a prepared data set (:mod:`ccrec.data.prepare`'s columns and files).
Item i belongs to category ((i - 1) mod |C|) + 1; each past interaction holds
up to ``items_per_interaction`` items of its category, six days apart.

Patterns:

* :class:`NextCategory`: the future is the category after the last past one
  (cyclic), so a model can fit it exactly;
* :class:`CategoryRun`: the past is a run c, c+1, … and the future the next one;
* :class:`PermutedPast`: the future is σ(c) of every past category, σ a fixed
  permutation;
* :class:`FeatureCategory`: one future category set by the user features alone;
* :class:`RepeatPast`: the future repeats the past categories;
* :class:`Favourites`: each user has a favourite and a second category, and
  past and future are drawn mostly from them (learnable, not exact).

A new data set is a new :class:`Pattern` subclass: override
:meth:`Pattern.future` (and :meth:`Pattern.past` / :meth:`Pattern.features`
when the user's history has a shape of its own).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Default split of user u: SPLIT_CYCLE[u mod 8] (every ``cold_every``-th user is cold).
SPLIT_CYCLE = ("train", "train", "train", "train", "train", "train", "valid", "warm_test")
DAY = 86_400
START_TIME = 1_000_000


@dataclass(frozen=True)
class SyntheticConfig:
    """The size and layout of a synthetic data set.

    Args:
        num_users: users drawn.
        num_categories: |C|.
        num_items: |I| (item i belongs to category ((i - 1) mod |C|) + 1).
        min_past, max_past: a user has between these many past interactions.
        distinct_past: past categories are all different (at most |C| of them).
        items_per_interaction: items drawn (with repetition, then deduplicated) per
            past interaction.
        feature_cardinalities: per user-feature column, its vocabulary size with
            the unknown index 0 (values are drawn from 1 … size - 1).
        split_cycle: user u's split is ``split_cycle[u mod len]``.
        cold_every: every ``cold_every``-th user (u mod cold_every = cold_every - 1)
            is a cold test user with one or two past interactions; 0 = none.
        seed: seeds every draw.
    """

    num_users: int = 64
    num_categories: int = 6
    num_items: int = 30
    min_past: int = 1
    max_past: int = 5
    distinct_past: bool = False
    items_per_interaction: int = 2
    feature_cardinalities: tuple[int, ...] = (3, 4)
    split_cycle: tuple[str, ...] = SPLIT_CYCLE
    cold_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_past <= self.max_past:
            raise ValueError(f"need 1 <= min_past ({self.min_past}) <= max_past "
                             f"({self.max_past})")
        if self.distinct_past and self.max_past > self.num_categories:
            raise ValueError("distinct_past needs max_past <= num_categories")
        if self.num_items < self.num_categories:
            raise ValueError("every category needs an item: num_items >= num_categories")

    def items_of(self, category: int) -> np.ndarray:
        return np.arange(category, self.num_items + 1, self.num_categories)


class Pattern(ABC):
    """What a synthetic user did and what they do next.

    Every method draws from ``rng`` only, so a data set is a function of the
    config's seed. ``user`` is the user's index (0 … num_users - 1).
    """

    def past(self, rng: np.random.Generator, user: int, length: int,
             config: SyntheticConfig) -> np.ndarray:
        """``length`` past categories, oldest first (default: uniform draws)."""
        categories = np.arange(1, config.num_categories + 1)
        return rng.choice(categories, length, replace=not config.distinct_past)

    def features(self, rng: np.random.Generator, user: int,
                 config: SyntheticConfig) -> np.ndarray:
        """One value per feature column, 1 … cardinality - 1 (default: uniform draws)."""
        return np.array([rng.integers(1, c) for c in config.feature_cardinalities], np.int64)

    @abstractmethod
    def future(self, rng: np.random.Generator, user: int, past: np.ndarray,
               features: np.ndarray, config: SyntheticConfig) -> np.ndarray:
        """The user's future categories γ_t (distinct, in order)."""


class NextCategory(Pattern):
    """Future = {last past category + 1} (cyclic over 1 … |C|)."""

    def future(self, rng, user, past, features, config):
        return np.array([past[-1] % config.num_categories + 1])


class CategoryRun(NextCategory):
    """Past = a run c, c+1, … (cyclic) from a random c; future = the next one."""

    def past(self, rng, user, length, config):
        start = int(rng.integers(config.num_categories))
        return (start + np.arange(length)) % config.num_categories + 1


@dataclass(frozen=True)
class PermutedPast(Pattern):
    """Future = {σ(c) for every past c}, σ a fixed permutation drawn with ``seed``."""

    seed: int = 123

    def future(self, rng, user, past, features, config):
        sigma = np.random.default_rng(self.seed).permutation(config.num_categories) + 1
        return np.unique(sigma[past - 1])


@dataclass(frozen=True)
class FeatureCategory(Pattern):
    """Future = {1 + (Σ_j weights_j · f_j) mod |C|}: the user features alone decide."""

    weights: tuple[int, ...] = (5, 3)

    def future(self, rng, user, past, features, config):
        score = int(np.dot(self.weights[:len(features)], features[:len(self.weights)]))
        return np.array([1 + score % config.num_categories])


class RepeatPast(Pattern):
    """Future = the past categories."""

    def future(self, rng, user, past, features, config):
        return np.unique(past)


@dataclass(frozen=True)
class Favourites(Pattern):
    """User u's favourite category is u mod |C| + 1, their second (7u + 1) mod |C| + 1.

    Every interaction, past or future, is the favourite with probability
    ``p_favourite``, the second with ``p_second``, else uniform. The first
    feature column holds the favourite (when its vocabulary is large enough).

    Args:
        p_favourite, p_second: the mixture.
        future_draws: interactions drawn for the future (their distinct categories).
    """

    p_favourite: float = 0.6
    p_second: float = 0.2
    future_draws: int = 6

    def _draw(self, rng: np.random.Generator, user: int, n: int, num: int) -> np.ndarray:
        favourite, second = user % num + 1, (user * 7 + 1) % num + 1
        r = rng.random(n)
        other = rng.integers(1, num + 1, n)
        return np.where(r < self.p_favourite, favourite,
                        np.where(r < self.p_favourite + self.p_second, second, other))

    def past(self, rng, user, length, config):
        return self._draw(rng, user, length, config.num_categories)

    def features(self, rng, user, config):
        values = super().features(rng, user, config)
        if len(values) and config.feature_cardinalities[0] > config.num_categories:
            values[0] = user % config.num_categories + 1
        return values

    def future(self, rng, user, past, features, config):
        drawn = self._draw(rng, user, self.future_draws, config.num_categories)
        return pd.unique(drawn).astype(np.int64)


@dataclass
class SyntheticData:
    """A generated data set: the prepared directory's contents in memory.

    Args:
        examples: one row per user, the columns of ``examples.parquet``.
        events: one row per (user, item) event.
        vocab: users, items, categories (index 0 padding), user features.
        meta: name, counts and ``config.sequence.max_past``.
    """

    examples: pd.DataFrame
    events: pd.DataFrame
    vocab: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> pd.DataFrame:
        return self.examples[self.examples["split"] == name].reset_index(drop=True)

    def write(self, path: str | Path) -> Path:
        """The prepared directory (examples, events, vocab, meta) at ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.examples.to_parquet(path / "examples.parquet")
        self.events.to_parquet(path / "events.parquet")
        (path / "vocab.json").write_text(json.dumps(self.vocab))
        (path / "meta.json").write_text(json.dumps(self.meta))
        return path


def generate(config: SyntheticConfig | None = None,
             pattern: Pattern | None = None) -> SyntheticData:
    """Draw ``config.num_users`` users following ``pattern`` (default :class:`NextCategory`)."""
    config = config or SyntheticConfig()
    pattern = pattern or NextCategory()
    rng = np.random.default_rng(config.seed)
    rows, events = [], []
    for u in range(config.num_users):
        cold = config.cold_every > 0 and u % config.cold_every == config.cold_every - 1
        high = min(2, config.max_past) if cold else config.max_past
        n = int(rng.integers(config.min_past if not cold else 1, high + 1))
        cats = np.asarray(pattern.past(rng, u, n, config), np.int64)
        items = [np.unique(rng.choice(config.items_of(int(c)), config.items_per_interaction))
                 for c in cats]
        feats = np.asarray(pattern.features(rng, u, config), np.int64)
        future = np.asarray(pattern.future(rng, u, cats, feats, config), np.int64)
        starts = START_TIME + 6 * DAY * np.arange(n, dtype=np.int64)
        cutoff = int(starts[-1]) + 1
        rows.append({
            "user": u, "past_categories": cats, "past_starts": starts,
            "past_items": [i.astype(np.int64) for i in items],
            "num_past_events": int(sum(len(i) for i in items)), "num_past_cis": n,
            "num_past_categories": len(set(cats.tolist())), "last_timestamp": int(starts[-1]),
            "future_categories": future, "cutoff": cutoff, "origin": cutoff,
            "user_features": feats,
            "split": "cold_test" if cold else config.split_cycle[u % len(config.split_cycle)],
        })
        events += [{"user": u, "item": int(i), "category": int(c), "timestamp": int(s)}
                   for c, its, s in zip(cats, items, starts, strict=True) for i in its]
    vocab = {
        "users": [str(u) for u in range(config.num_users)],
        "items": ["<pad>"] + [f"i{i}" for i in range(1, config.num_items + 1)],
        "categories": ["<pad>"] + [f"c{c}" for c in range(1, config.num_categories + 1)],
        "user_features": {f"f{j}": ["<unk>"] + [f"v{v}" for v in range(1, card)]
                          for j, card in enumerate(config.feature_cardinalities)},
    }
    meta = {"dataset": "synthetic", "name": "synthetic", "pattern": type(pattern).__name__,
            "num_users": config.num_users, "num_items": config.num_items,
            "num_categories": config.num_categories,
            "config": {"sequence": {"max_past": config.max_past}}}
    return SyntheticData(pd.DataFrame(rows), pd.DataFrame(events), vocab, meta)


def write_synthetic(path: str | Path, *, pattern: Pattern | None = None,
                    **config: Any) -> Path:
    """Write a prepared directory at ``path``; ``config`` are :class:`SyntheticConfig` fields."""
    return generate(SyntheticConfig(**config), pattern).write(path)
