"""Training data from the Feast offline log that the stream worker writes.

Every row the worker pushes to ``user_category_sequence`` is also appended to
the view's offline log (:func:`features.store.push_view_rows`), and every row
carries the user's retained events (the ``worker_state`` value,
:class:`streaming.state.UserState`). The log is therefore an event-sourced
record of the stream: the events of a user are the union of the events its
rows hold. An event occurs in a row as many times as it was clicked, so the
union keeps, per (user, item, category, time), the largest count any one row
holds. (An event that retention dropped in the very batch it arrived in, more
than ``max_events`` new events of one user at once, never reaches a row.)

:func:`prepare_from_feast` turns the log into a prepared data set with
:func:`ccrec.data.prepare.prepare`, the function ``ccrec data prepare`` runs:
the same events give the same vocabularies, splits and examples, with the
same point-in-time rule (an example's features come from the events strictly
before its origin, its targets from those at or after it; see
:mod:`ccrec.data.examples`). The user profiles f_t come from the
``user_profile`` log (its latest row per user).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from ccrec.data.adapters import RawData
from features import definitions as d
from streaming.state import UserState

if TYPE_CHECKING:
    from feast import FeatureStore

    from ccrec.data.prepare import PrepareConfig

#: The columns of :func:`log_events` (item and category are the vocabulary's codes).
EVENT_COLUMNS = ("user_id", "item", "category", "timestamp")


def _read_log(store: FeatureStore, view: str, columns: list[str]) -> pd.DataFrame:
    """A view's offline log (its parquet part files under the store's root)."""
    source = store.get_feature_view(view).batch_source
    directory = Path(store.repo_path) / source.path
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: the feature store has no offline log of {view}; "
                                "run the stream worker (ccrec stream run) first")
    return ds.dataset(directory, format="parquet").to_table(columns=columns).to_pandas()


def log_events(store: FeatureStore) -> pd.DataFrame:
    """Every event the stream applied, from the ``user_category_sequence`` log.

    Returns:
        :data:`EVENT_COLUMNS`, sorted by (user_id, timestamp, category, item).
    """
    rows = _read_log(store, d.user_category_sequence.name, [d.USER_ID, d.WORKER_STATE])
    parts = {name: [] for name in (*EVENT_COLUMNS, "row")}
    for row, (user_id, raw) in enumerate(zip(rows[d.USER_ID], rows[d.WORKER_STATE],
                                             strict=True)):
        if raw is None:
            continue
        state = UserState.from_bytes(raw)
        n = len(state.items)
        parts["user_id"].append(np.full(n, user_id, object))
        parts["item"].append(state.items)
        parts["category"].append(state.categories)
        parts["timestamp"].append(state.timestamps)
        parts["row"].append(np.full(n, row, np.int64))
    if not parts["row"]:
        return pd.DataFrame({name: pd.Series(dtype=object if name == "user_id" else np.int64)
                             for name in EVENT_COLUMNS})
    frame = pd.DataFrame({name: np.concatenate(values) for name, values in parts.items()})
    key = list(EVENT_COLUMNS)
    # per row, how often each event occurs; per event, the most any row holds
    counts = frame.groupby([*key, "row"], sort=False).size().groupby(level=key).max()
    events = counts.index.to_frame(index=False).loc[np.repeat(np.arange(len(counts)),
                                                              counts.to_numpy())]
    return (events.sort_values(["user_id", "timestamp", "category", "item"], kind="stable")
            .reset_index(drop=True).astype({n: np.int64 for n in EVENT_COLUMNS[1:]}))


def log_profiles(store: FeatureStore) -> pd.DataFrame:
    """The latest ``user_features`` (f_t indices) per user, from the ``user_profile`` log;
    indexed by user_id."""
    rows = _read_log(store, d.user_profile.name,
                     [d.USER_ID, d.USER_FEATURES, d.EVENT_TIMESTAMP, d.CREATED])
    rows = rows.sort_values([d.EVENT_TIMESTAMP, d.CREATED], kind="stable")
    return rows.drop_duplicates(d.USER_ID, keep="last").set_index(d.USER_ID)[[d.USER_FEATURES]]


def raw_from_log(store: FeatureStore, vocab: dict) -> RawData:
    """The log's events and profiles in the data set's own ids (a :class:`RawData`).

    Args:
        store: the feature store the worker wrote.
        vocab: the ``vocab.json`` content the worker coded events with (the
            prepared data set's or the serving bundle's).
    """
    events = log_events(store)
    items = np.asarray(vocab["items"], object)
    categories = np.asarray(vocab["categories"], object)
    frame = pd.DataFrame({
        "user_id": events["user_id"].astype(str).to_numpy(),
        "item_id": items[events["item"].to_numpy()],
        "category_id": categories[events["category"].to_numpy()],
        "event_type": "click",
        "timestamp": events["timestamp"].to_numpy(np.int64),
    })
    columns = list(vocab.get("user_features", {}))
    profiles = log_profiles(store)
    decoded = {}
    for j, column in enumerate(columns):
        values = np.asarray(vocab["user_features"][column], object)
        codes = [int(f[j]) if len(f) > j else 0 for f in profiles[d.USER_FEATURES]]
        # index 0 is "unknown": no value, as an empty field of the source data
        decoded[column] = [values[c] if 0 < c < len(values) else None for c in codes]
    features = pd.DataFrame(decoded, index=profiles.index.rename("user_id"), columns=columns)
    return RawData("feast", frame, features, {})


def prepare_from_feast(store: FeatureStore, vocab: dict, config: PrepareConfig, out_dir: Path,
                       dataset: str = "events:feast") -> Path:
    """A prepared data set (``ccrec data prepare``'s layout) from the store's offline log.

    Args:
        store: the feature store the stream worker wrote.
        vocab: the ``vocab.json`` content the worker coded events with (a prepared data
            set's or the served bundle's); the result keeps its codes, so the model of
            that vocabulary can go on training on it.
        config: the preparation rules (cutoff, horizon, splits).
        out_dir: where the prepared data set goes (replaced if present).
        dataset: the data set's name (its default training configuration).

    Raises:
        ccrec.data.prepare.PrepareError: the log holds no usable example.
    """
    from ccrec.data.prepare import prepare

    return prepare(dataset, config, raw=raw_from_log(store, vocab), out_dir=out_dir, vocab=vocab)


def read_vocab(path: Path) -> tuple[dict, str]:
    """The vocabulary and data set name of a prepared directory or a bundle directory."""
    vocab = json.loads((path / "vocab.json").read_text())
    for name in ("meta.json", "manifest.json"):
        if (path / name).exists():
            return vocab, json.loads((path / name).read_text()).get("dataset") or "events:feast"
    return vocab, "events:feast"


def prepared_from_store(prepared: Path, root: Path, environment: str = "sqlite",
                        project: str | None = None, out_dir: Path | None = None) -> Path:
    """``ccrec train --source feast``: the prepared data set's task (its meta.json
    configuration) rebuilt from the offline log of the store at ``root``, in the prepared
    data set's vocabulary; written to ``out_dir`` (default ``<prepared>-feast``)."""
    from ccrec.config import build
    from ccrec.data.prepare import PrepareConfig
    from features.store import open_store

    vocab, dataset = read_vocab(prepared)
    config = build(PrepareConfig, json.loads((prepared / "meta.json").read_text())["config"])
    store = open_store(root, environment, project=project)
    out = out_dir or prepared.with_name(prepared.name + "-feast")
    return prepare_from_feast(store, vocab, config, out, dataset)
