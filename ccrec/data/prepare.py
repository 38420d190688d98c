"""Preparation: raw events → vocabularies, past/future split, user splits, on disk.

The prepared directory of a data set holds:

* ``examples.parquet``: one row per evaluable user (at least one past CI and
  one future category): ``user``, ``split`` (train / valid / warm_test /
  cold_test), ``cutoff``, the past sequence columns of
  :func:`ccrec.data.sequences.past_sequences`, ``future_categories`` and
  ``user_features`` (one index per f_t column, 0 = unknown);
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

from ccrec.config import to_dict
from ccrec.data.adapters import RawData, load_dataset
from ccrec.data.fetch import cache_dir
from ccrec.data.sequences import (
    DAY,
    SequenceSpec,
    assign_category_interactions,
    future_categories,
    past_sequences,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "warm_test", "cold_test")


@dataclass(frozen=True)
class PrepareConfig:
    """How a data set is split into past and future, and users into splits.

    Args:
        cutoff_mode: ``global`` (one cutoff time for everyone, the paper's
            rule) or ``per_user`` (each user's last ``future_fraction`` of
            events is the future; for data like ML-1M where most users are
            active only once).
        cutoff: ISO date of the global cutoff; None → the data set's default.
        future_fraction: per_user mode's share of a user's events in the future.
        future_days: only future events within this many days of the cutoff count.
        test_fraction: seeded share of users held out for testing.
        valid_fraction: seeded share of the remaining users for validation.
        cold_max_cis: test users with at most this many past CIs are cold.
        seed: seeds every random choice.
        sequence: the grouping and retention rules (shared with streaming).
    """

    cutoff_mode: Literal["global", "per_user"] = "global"
    cutoff: str | None = None
    future_fraction: float = 0.2
    future_days: float = 92.0
    test_fraction: float = 0.1
    valid_fraction: float = 0.1
    cold_max_cis: int = 2
    seed: int = 0
    sequence: SequenceSpec = field(default_factory=SequenceSpec)


#: Documented defaults per data set (see docs/data.md).
DATASET_DEFAULTS: dict[str, PrepareConfig] = {
    # ML-1M users mostly rate in one burst; a global cutoff leaves ~900 users with
    # both a past and a future, so each user's last 20% of ratings is the future.
    "ml-1m": PrepareConfig(cutoff_mode="per_user", future_fraction=0.2, future_days=3 * 365.0),
    # One year of grocery baskets: nine months of past, the last quarter is the future.
    "complete-journey": PrepareConfig(cutoff_mode="global", cutoff="2017-10-01", future_days=92.0),
    # A user's own events: global cutoff at the time by which 80% of events happened.
    "events": PrepareConfig(cutoff_mode="global", cutoff=None, future_days=92.0),
}


class PrepareError(ValueError):
    """The data cannot be prepared with this configuration."""


def _encode(values: pd.Series, start: int) -> tuple[np.ndarray, list[str]]:
    """Integer codes by descending frequency (ties by value), from ``start``."""
    counts = values.value_counts()
    vocab = sorted(counts.index, key=lambda v: (-counts[v], v))
    mapping = pd.Series(np.arange(start, start + len(vocab)), index=vocab)
    return mapping.loc[values].to_numpy(np.int64), [str(v) for v in vocab]


def _cutoffs(events: pd.DataFrame, config: PrepareConfig) -> pd.Series:
    """The cutoff time (epoch s) per user."""
    if config.cutoff_mode == "per_user":
        ordered = events.sort_values(["user", "timestamp"], kind="stable")
        position = ordered.groupby("user", sort=True).cumcount().to_numpy()
        size = ordered.groupby("user", sort=True)["timestamp"].transform("size").to_numpy()
        first_future = np.floor(size * (1.0 - config.future_fraction)).astype(np.int64)
        pick = ordered[position == np.minimum(first_future, size - 1)]
        return pick.set_index("user")["timestamp"].astype(np.int64)
    if config.cutoff is not None:
        when = int(pd.Timestamp(config.cutoff, tz="UTC").timestamp())
    else:
        when = int(np.quantile(events["timestamp"].to_numpy(), 0.8))
    users = np.unique(events["user"].to_numpy())
    return pd.Series(when, index=pd.Index(users, name="user"), dtype=np.int64)


def _split_users(users: np.ndarray, config: PrepareConfig) -> np.ndarray:
    """Seeded train / valid / test assignment; the test share is halved into warm/cold."""
    rng = np.random.default_rng(config.seed)
    draw = rng.random(len(users))
    split = np.where(draw < config.test_fraction, "test", "train").astype(object)
    valid_draw = rng.random(len(users))
    split[(split == "train") & (valid_draw < config.valid_fraction)] = "valid"
    cold_draw = rng.random(len(users))
    split[(split == "test") & (cold_draw < 0.5)] = "cold_test"
    split[split == "test"] = "warm_test"
    return split.astype(str)


def _examples_at(
    coded: pd.DataFrame, features: np.ndarray, cutoff: pd.Series, config: PrepareConfig
) -> pd.DataFrame:
    """Past sequences before, and future categories after, each user's cutoff."""
    user_cutoff = cutoff.reindex(coded["user"].to_numpy()).to_numpy()
    ts = coded["timestamp"].to_numpy()
    past_events = coded[ts < user_cutoff]
    horizon = user_cutoff + int(config.future_days * DAY)
    future_events = coded[(ts >= user_cutoff) & (ts < horizon)]
    past = past_sequences(past_events, config.sequence)
    future = future_categories(future_events)
    examples = past[past["user"].isin(future.index)].reset_index(drop=True)
    users = examples["user"].to_numpy(np.int64)
    examples["future_categories"] = future.loc[users].to_numpy()
    examples["cutoff"] = cutoff.loc[users].to_numpy()
    examples["user_features"] = list(features[users])
    return examples


def _cold_cutoffs(past_events: pd.DataFrame, config: PrepareConfig) -> pd.Series:
    """Per user, the latest time before which they had 1..cold_max_cis CIs.

    Moving a held-out user's cutoff there simulates a newcomer: only their
    first CIs are known, and the future is what they did next (the paper's
    cold-start simulation on RetailRocket).
    """
    anchor = assign_category_interactions(
        past_events["user"].to_numpy(), past_events["category"].to_numpy(),
        past_events["timestamp"].to_numpy(), config.sequence.window_seconds,
    )
    starts = past_events.iloc[np.unique(anchor)][["user", "timestamp"]]
    per_time = starts.groupby(["user", "timestamp"]).size().rename("n").reset_index()
    per_time["before"] = per_time.groupby("user")["n"].cumsum() - per_time["n"]
    ok = per_time[(per_time["before"] >= 1) & (per_time["before"] <= config.cold_max_cis)]
    return ok.groupby("user")["timestamp"].max().astype(np.int64)


def build_examples(
    coded: pd.DataFrame, features: np.ndarray, config: PrepareConfig
) -> pd.DataFrame:
    """Past sequences, future categories and splits for every evaluable user.

    Held-out users are split in two: warm test users keep their history;
    cold test users are seen as newcomers (their cutoff moves to just after
    their first ``cold_max_cis`` CIs) unless they already are that cold. A
    held-out user who cannot be made cold is a warm test user.

    Args:
        coded: integer events (user, item, category, timestamp).
        features: per user index, the f_t indices (shape [num_users, F]).
        config: cutoff and split rules.
    """
    cutoff = _cutoffs(coded, config)
    examples = _examples_at(coded, features, cutoff, config)
    examples["split"] = _split_users(examples["user"].to_numpy(), config)
    cold = examples["split"] == "cold_test"
    already_cold = cold & (examples["num_past_cis"] <= config.cold_max_cis)
    to_move = examples.loc[cold & ~already_cold, "user"].to_numpy()
    ts = coded["timestamp"].to_numpy()
    user_cutoff = cutoff.reindex(coded["user"].to_numpy()).to_numpy()
    candidates = coded[np.isin(coded["user"].to_numpy(), to_move) & (ts < user_cutoff)]
    cold_cutoff = _cold_cutoffs(candidates, config)
    moved = _examples_at(
        coded[np.isin(coded["user"].to_numpy(), cold_cutoff.index.to_numpy())],
        features, cold_cutoff, config,
    )
    moved = moved[moved["num_past_cis"] <= config.cold_max_cis].assign(split="cold_test")
    keep = ~np.isin(examples["user"].to_numpy(), moved["user"].to_numpy())
    examples = pd.concat([examples[keep], moved], ignore_index=True)
    unmoved = (examples["split"] == "cold_test") & (examples["num_past_cis"] > config.cold_max_cis)
    examples.loc[unmoved, "split"] = "warm_test"
    return examples.sort_values("user", kind="stable").reset_index(drop=True)


def prepared_name(dataset: str, category_level: str | None) -> str:
    if dataset.startswith("events:"):
        stem = Path(dataset.split(":", 1)[1]).stem
        return f"events-{stem}"
    return dataset if category_level in (None, "product_category", "genre") else (
        f"{dataset}-{category_level}"
    )


def default_config(dataset: str) -> PrepareConfig:
    return DATASET_DEFAULTS["events" if dataset.startswith("events:") else dataset]


def prepare(
    dataset: str,
    config: PrepareConfig | None = None,
    *,
    category_level: str | None = None,
    out_dir: Path | None = None,
    raw: RawData | None = None,
) -> Path:
    """Prepare ``dataset`` and return the prepared directory."""
    config = config or default_config(dataset)
    raw = raw or load_dataset(dataset, category_level)
    out_dir = Path(out_dir or cache_dir() / "prepared" / prepared_name(dataset, category_level))

    users_code, users = _encode(raw.events["user_id"], 0)
    items_code, items = _encode(raw.events["item_id"], 1)
    cats_code, categories = _encode(raw.events["category_id"], 1)
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
        vocab = sorted(v for v in values.unique() if v != "")
        lookup = pd.Series(np.arange(1, len(vocab) + 1), index=vocab)
        features[:, j] = lookup.reindex(values.to_numpy()).fillna(0).to_numpy(np.int64)
        feature_vocab[column] = ["<unknown>", *vocab]

    examples = build_examples(coded, features, config)
    if examples.empty:
        raise PrepareError(
            f"{dataset}: no user has both past and future events with this cutoff; "
            "choose another cutoff"
        )
    meta = {
        "dataset": dataset,
        "name": prepared_name(dataset, category_level),
        "category_level": category_level,
        "config": to_dict(config),
        "num_users": len(users),
        "num_items": len(items),
        "num_categories": len(categories),
        "num_events": len(coded),
        "dropped_events": raw.dropped_events,
        "split_sizes": {s: int((examples["split"] == s).sum()) for s in SPLITS},
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        examples.to_parquet(staging / "examples.parquet", index=False)
        coded.to_parquet(staging / "events.parquet", index=False)
        vocab = {
            "users": users, "items": ["<pad>", *items], "categories": ["<pad>", *categories],
            "user_features": feature_vocab,
        }
        (staging / "vocab.json").write_text(json.dumps(vocab))
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("prepared %s → %s (%s)", dataset, out_dir, meta["split_sizes"])
    return out_dir
