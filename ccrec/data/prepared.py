"""Loading a prepared data set (see :mod:`ccrec.data.prepare` for the layout)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ccrec.data.fetch import cache_dir

REQUIRED_FILES = ("examples.parquet", "events.parquet", "vocab.json", "meta.json")


@dataclass
class PreparedData:
    """A prepared data set.

    Args:
        path: its directory.
        examples: one row per evaluable user (see :mod:`ccrec.data.prepare`).
        vocab: users, items, categories (index 0 = padding), user_features.
        meta: configuration and counts.
    """

    path: Path
    examples: pd.DataFrame
    vocab: dict
    meta: dict

    @property
    def num_categories(self) -> int:
        """|C|, excluding the padding index 0."""
        return len(self.vocab["categories"]) - 1

    @property
    def num_items(self) -> int:
        return len(self.vocab["items"]) - 1

    @property
    def feature_cardinalities(self) -> list[int]:
        """Vocabulary size of each f_t column, the unknown index 0 included."""
        return [len(v) for v in self.vocab["user_features"].values()]

    def split(self, name: str) -> pd.DataFrame:
        return self.examples[self.examples["split"] == name].reset_index(drop=True)

    def events(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "events.parquet")


def resolve(dataset_or_path: str | Path) -> Path:
    """A prepared directory from a path or a prepared data-set name."""
    path = Path(dataset_or_path)
    if path.is_dir():
        return path
    return cache_dir() / "prepared" / str(dataset_or_path)


def load_prepared(dataset_or_path: str | Path) -> PreparedData:
    path = resolve(dataset_or_path)
    missing = [f for f in REQUIRED_FILES if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a prepared data set (missing {missing}); run `ccrec data prepare`"
        )
    return PreparedData(
        path=path,
        examples=pd.read_parquet(path / "examples.parquet"),
        vocab=json.loads((path / "vocab.json").read_text()),
        meta=json.loads((path / "meta.json").read_text()),
    )
