"""Preparation: raw events → vocabularies, past/future split, user splits, on disk.

The prepared directory of a data set holds:

* ``examples.parquet``: one row per example, unique by (``user``,
  ``origin``): ``origin`` is the feature time (past = events strictly
  before it), ``cutoff`` the user's cutoff (origin ≤ cutoff), ``split``
  (train / valid / warm_test / cold_test), the past sequence columns of
  :func:`ccrec.data.sequences.past_sequences`, ``future_categories`` (γ_t in
  the configured horizon) and ``user_features`` (one index per f_t column,
  0 = unknown). Validation and test users have one example, at their
  cutoff; training users one per rolling origin (:mod:`ccrec.data.origins`);
* ``events.parquet``: every event, integer-coded (for replay and features);
* ``vocab.json``: users, items, categories and user-feature vocabularies
  (category and item index 0 is padding; feature index 0 is unknown);
* ``meta.json``: the configuration, cutoff rule and counts.

It is written to a temporary directory and renamed, so a failed run leaves
nothing half-written behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ccrec.config import ConfigError, to_dict
from ccrec.data.adapters import RawData, load_dataset
from ccrec.data.cutoff import (
    Qualification,
    advice,
    alternatives,
    better,
    cutoffs,
    qualification,
)
from ccrec.data.examples import examples_at
from ccrec.data.fetch import cache_dir
from ccrec.data.horizon import Horizon, HorizonError, category_interactions
from ccrec.data.origins import newcomer_origins, rolling_origins
from ccrec.data.sequences import SequenceSpec

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "warm_test", "cold_test")


@dataclass(frozen=True)
class PrepareConfig:
    """How a data set is split into past and future, and users into splits.

    Args:
        cutoff_mode: ``global`` (one cutoff time for everyone, the paper's
            rule) or ``per_user`` (at the user's own CI boundary that leaves the
            last ``future_fraction`` of their boundaries in the future; for
            data like ML-1M where most users are active only once).
        cutoff: ISO date of the global cutoff; None → the data set's default.
        future_fraction: per_user mode's share of a user's CI boundaries (distinct
            CI start times) at or after the cutoff.
        future: the horizon (:mod:`ccrec.data.horizon`): ``cis:N`` (the first N
            category interactions at/after the cutoff), ``days:D`` or ``all``.
            Training targets and test futures use the same horizon.
        max_origins_per_user: a training user is an example at every CI
            boundary before the cutoff and at the cutoff, the latest this many
            (1 = the cutoff alone); :mod:`ccrec.data.origins`.
        test_fraction: seeded share of users held out for testing.
        valid_fraction: seeded share of the remaining users for validation.
        cold_share: share of the held-out users made newcomers (cold).
        cold_min_cis, cold_max_cis: a newcomer keeps k known CIs, k drawn
            uniformly (seeded) from this range; 0 = no history, only f_t.
        seed: seeds every random choice.
        sequence: the grouping and retention rules, and ``max_past`` (k, the
            past CIs kept; paper: 10), shared with streaming.
    """

    cutoff_mode: Literal["global", "per_user"] = "global"
    cutoff: str | None = None
    future_fraction: float = 0.2
    future: str = "cis:3"
    max_origins_per_user: int = 50
    test_fraction: float = 0.2
    valid_fraction: float = 0.1
    cold_share: float = 0.5
    cold_min_cis: int = 0
    cold_max_cis: int = 2
    seed: int = 0
    sequence: SequenceSpec = field(default_factory=SequenceSpec)

    def __post_init__(self) -> None:
        try:
            Horizon.parse(self.future)
        except HorizonError as exc:
            raise ConfigError(f"future: {exc}") from exc
        if not 0 <= self.cold_min_cis <= self.cold_max_cis:
            raise ConfigError(f"cold_min_cis ({self.cold_min_cis}) must be between 0 and "
                              f"cold_max_cis ({self.cold_max_cis})")
        if self.max_origins_per_user < 1:
            raise ConfigError("max_origins_per_user must be at least 1 (the cutoff)")

    @property
    def horizon(self) -> Horizon:
        return Horizon.parse(self.future)

    @property
    def protocol(self) -> dict[str, str | int]:
        """The task in two words: the horizon and k, as the results files record it."""
        return {"future": str(self.horizon), "max_past": self.sequence.max_past}


#: Documented defaults per data set (see docs/data.md). Every data set gets the
#: paper's Tmall task: the first 3 future CIs, at most 10 known ones.
DATASET_DEFAULTS: dict[str, PrepareConfig] = {
    # ML-1M users mostly rate in one burst; a global cutoff leaves ~900 users with
    # both a past and a future, so each user's cutoff is their own CI boundary
    # with the last 20% of their boundaries after it.
    "ml-1m": PrepareConfig(cutoff_mode="per_user", future_fraction=0.2),
    # One year of grocery baskets: nine months of past.
    "complete-journey": PrepareConfig(cutoff_mode="global", cutoff="2017-10-01"),
    # A user's own events: global cutoff at the time by which 80% of events happened.
    "events": PrepareConfig(cutoff_mode="global", cutoff=None),
}


class PrepareError(ValueError):
    """The data cannot be prepared with this configuration."""


def _encode(values: pd.Series, start: int,
            codes: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Integer codes by descending frequency (ties by value), from ``start``; or, given
    ``codes`` (a vocabulary, index = code), those codes."""
    if codes is not None:
        lookup = pd.Series(np.arange(len(codes)), index=codes)
        unknown = values[~values.isin(lookup.index)]
        if len(unknown):
            raise PrepareError(f"{unknown.iloc[0]!r} is not in the given vocabulary")
        return lookup.loc[values].to_numpy(np.int64), list(codes[start:])
    counts = values.value_counts()
    vocab = sorted(counts.index, key=lambda v: (-counts[v], v))
    mapping = pd.Series(np.arange(start, start + len(vocab)), index=vocab)
    return mapping.loc[values].to_numpy(np.int64), [str(v) for v in vocab]


def _split_users(users: np.ndarray, config: PrepareConfig) -> np.ndarray:
    """Seeded train / valid / warm_test / cold_test assignment of users."""
    rng = np.random.default_rng(config.seed)
    draw = rng.random(len(users))
    split = np.where(draw < config.test_fraction, "test", "train").astype(object)
    valid_draw = rng.random(len(users))
    split[(split == "train") & (valid_draw < config.valid_fraction)] = "valid"
    cold_draw = rng.random(len(users))
    split[(split == "test") & (cold_draw < config.cold_share)] = "cold_test"
    split[split == "test"] = "warm_test"
    return split.astype(str)


def _known_cis(users: np.ndarray, config: PrepareConfig) -> pd.Series:
    """Seeded number of known CIs per newcomer, uniform in [cold_min_cis, cold_max_cis]."""
    rng = np.random.default_rng([config.seed, 1])
    known = rng.integers(config.cold_min_cis, config.cold_max_cis + 1, size=len(users))
    return pd.Series(known, index=pd.Index(users, name="user"))


def build_examples(
    coded: pd.DataFrame, features: np.ndarray, config: PrepareConfig,
    cis: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Examples of every split, at the feature times of :mod:`ccrec.data.origins`.

    Users with at least one past CI and one future category at their cutoff
    are kept and split (seeded). Validation and warm test users are one
    example at the cutoff; training users one per rolling origin; cold test
    users one at their newcomer origin (their ``cutoff`` moves there). A
    warm-drawn test user with at most ``cold_max_cis`` known CIs at the cutoff
    is a newcomer as they are (cold, at the cutoff), so warm always means more
    history than any cold user has.

    Args:
        coded: integer events (user, item, category, timestamp).
        features: per user index, the f_t indices (shape [num_users, F]).
        config: cutoff, horizon and split rules.
        cis: the events' category interactions, when already computed.
    """
    spec, horizon = config.sequence, config.horizon
    if cis is None:
        cis = category_interactions(coded, spec.window_seconds)
    cutoff = cutoffs(coded, cis, config)
    at_cutoff = examples_at(coded, cis, features, cutoff.index.to_numpy(),
                            cutoff.to_numpy(), spec, horizon)
    at_cutoff = at_cutoff[at_cutoff["num_past_cis"] > 0].reset_index(drop=True)
    split = pd.Series(_split_users(at_cutoff["user"].to_numpy(), config),
                      index=at_cutoff["user"].to_numpy())
    at_cutoff["split"] = split.to_numpy()

    train = cutoff.loc[split.index[split == "train"]]
    rolling = rolling_origins(cis, train, config.max_origins_per_user)
    rolling = rolling[rolling["origin"].to_numpy() < train.reindex(rolling["user"]).to_numpy()]
    cold = cutoff.loc[split.index[split == "cold_test"]]
    newcomer = newcomer_origins(cis, cold, _known_cis(cold.index.to_numpy(), config))
    # a held-out user who already is a newcomer at the cutoff stays as they are
    short = (split == "warm_test").to_numpy() & (at_cutoff["num_past_cis"].to_numpy()
                                               <= config.cold_max_cis)
    at_cutoff.loc[short, "split"] = "cold_test"
    frames = [at_cutoff[at_cutoff["split"] != "cold_test"], at_cutoff[short]]
    for users, origins, name in (
        (rolling["user"].to_numpy(), rolling["origin"].to_numpy(), "train"),
        (newcomer.index.to_numpy(), newcomer.to_numpy(), "cold_test"),
    ):
        frames.append(examples_at(coded, cis, features, users, origins, spec, horizon)
                      .assign(split=name))
    examples = pd.concat(frames, ignore_index=True)
    # a training example's origin is at or before its user's cutoff; every other
    # example is at its user's (possibly moved) cutoff
    examples["cutoff"] = np.where(examples["split"].to_numpy() == "train",
                                  cutoff.reindex(examples["user"]).to_numpy(),
                                  examples["origin"].to_numpy())
    return examples.sort_values(["user", "origin"], kind="stable").reset_index(drop=True)


def _requested_splits(config: PrepareConfig) -> list[str]:
    """The splits an experiment cannot run without: train, and the test splits the
    configuration asks for (``test_fraction`` 0 asks for none)."""
    wanted = ["train"]
    if config.test_fraction > 0:
        wanted += [s for s, share in (("warm_test", 1 - config.cold_share),
                                      ("cold_test", config.cold_share)) if share > 0]
    return wanted


def _check_splits(dataset: str, examples: pd.DataFrame, config: PrepareConfig,
                  users_kept: Qualification, fix: tuple[str, Qualification] | None) -> list[str]:
    """Refuse, naming the cause and the fix, when a needed split would be empty; the
    warnings of an empty validation split."""
    present = set(examples["split"].unique()) if not examples.empty else set()
    empty = [s for s in _requested_splits(config) if s not in present]
    if not empty:
        if config.valid_fraction > 0 and "valid" not in present:
            return [f"the valid split is empty ({users_kept.kept} users kept, valid_fraction "
                    f"{config.valid_fraction:g}): no validation users for early stopping"]
        return []
    if users_kept.kept == 0:
        cause = f"no user has both past and future events: {users_kept.reasons()}"
    else:
        cause = (f"only {users_kept.kept} of {users_kept.users} users qualify"
                 f"{' (' + users_kept.reasons() + ')' if users_kept.reasons() else ''}, "
                 "too few for every split")
    how = (f"{fix[0]} keeps {fix[1].kept} users" if fix else
           "use more users, or --set test_fraction=0 for no test users")
    raise PrepareError(f"{dataset}: the {', '.join(empty)} split would be empty with the "
                       f"{users_kept.rule} and horizon {users_kept.horizon}: {cause}. "
                       f"Fix: {how}")


def prepared_name(dataset: str, category_level: str | None, future: str | None = None) -> str:
    """The prepared directory's name: the data set, its category level unless the
    default, and its horizon unless the default (``ml-1m-all``, ``ml-1m-cis1``)."""
    if dataset.startswith("events:"):
        name = f"events-{Path(dataset.split(':', 1)[1]).stem}"
    elif category_level in (None, "product_category", "genre"):
        name = dataset
    else:
        name = f"{dataset}-{category_level}"
    if future is not None and Horizon.parse(future) != default_config(dataset).horizon:
        name += "-" + str(Horizon.parse(future)).replace(":", "")
    return name


def default_config(dataset: str) -> PrepareConfig:
    return DATASET_DEFAULTS["events" if dataset.startswith("events:") else dataset]


def prepare(
    dataset: str,
    config: PrepareConfig | None = None,
    *,
    category_level: str | None = None,
    out_dir: Path | None = None,
    raw: RawData | None = None,
    vocab: dict | None = None,
) -> Path:
    """Prepare ``dataset`` and return the prepared directory.

    ``vocab`` (a ``vocab.json``, e.g. a served model's) keeps its item, category
    and user-feature codes instead of coding them by frequency, so that a model of
    that vocabulary can go on training on the result.
    """
    config = config or default_config(dataset)
    raw = raw or load_dataset(dataset, category_level)
    name = prepared_name(dataset, category_level, config.future)
    out_dir = Path(out_dir or cache_dir() / "prepared" / name)
    kept = vocab or {}

    users_code, users = _encode(raw.events["user_id"], 0)
    items_code, items = _encode(raw.events["item_id"], 1, kept.get("items"))
    cats_code, categories = _encode(raw.events["category_id"], 1, kept.get("categories"))
    coded = pd.DataFrame(
        {
            "user": users_code, "item": items_code, "category": cats_code,
            "timestamp": raw.events["timestamp"].to_numpy(np.int64),
        }
    )
    feature_vocab: dict[str, list[str]] = {}
    features = np.zeros((len(users), len(raw.user_features.columns)), dtype=np.int64)
    aligned = raw.user_features.reindex(users)
    for j, column in enumerate(raw.user_features.columns):
        values = aligned[column].fillna("").astype(str)
        known = kept.get("user_features", {}).get(column)
        names = known[1:] if known else sorted(v for v in values.unique() if v != "")
        lookup = pd.Series(np.arange(1, len(names) + 1), index=names)
        features[:, j] = lookup.reindex(values.to_numpy()).fillna(0).to_numpy(np.int64)
        feature_vocab[column] = ["<unknown>", *names]

    cis = category_interactions(coded, config.sequence.window_seconds)
    users_kept = qualification(coded, cis, config, config.horizon)
    options = alternatives(coded, cis, config) if users_kept.share < 0.5 else []
    warning = advice(users_kept, options)
    if warning:
        log.debug("%s: %s", dataset, warning)
    examples = build_examples(coded, features, config, cis=cis)
    warnings = [warning] if warning else []
    warnings += _check_splits(dataset, examples, config, users_kept, better(users_kept, options))
    meta = {
        "dataset": dataset,
        "name": name,
        "category_level": category_level,
        "config": to_dict(config),
        "num_users": len(users),
        "num_items": len(items),
        "num_categories": len(categories),
        "num_events": len(coded),
        "dropped_events": raw.dropped_events,
        "users_kept": users_kept.to_dict(),
        "warnings": warnings,
        "protocol": config.protocol,
        "split_users": {s: int(examples.loc[examples["split"] == s, "user"].nunique())
                        for s in SPLITS},
        "split_examples": {s: int((examples["split"] == s).sum()) for s in SPLITS},
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        examples.to_parquet(staging / "examples.parquet", index=False)
        coded.to_parquet(staging / "events.parquet", index=False)
        written = {
            "users": users, "items": ["<pad>", *items], "categories": ["<pad>", *categories],
            "user_features": feature_vocab,
        }
        (staging / "vocab.json").write_text(json.dumps(written))
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.debug("prepared %s → %s (users %s, examples %s)", dataset, out_dir,
             meta["split_users"], meta["split_examples"])
    return out_dir
