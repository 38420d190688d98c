"""The Python API around the Feast repository: open, apply, write, read.

Serving reads a user's features with :func:`read_user_features`; the
streaming worker writes with :func:`push_rows`; training data comes from
:func:`historical_features`. A store lives in a *root* directory (the Feast
``repo_path``): ``features/`` itself by default, any directory for tests and
deployments; everything it writes goes under ``<root>/data/``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore, RepoConfig
from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

from features import definitions as d

#: The Feast repository (feature_store.yaml + definitions.py).
FEATURES_DIR = Path(__file__).resolve().parent
DEFAULT_REDIS = "127.0.0.1:6379"
OnlineKind = Literal["sqlite", "redis"]

#: The model-facing features of user_category_sequence, in schema order.
SEQUENCE_FEATURES = (
    d.PAST_CATEGORIES, d.PAST_STARTS, d.PAST_ITEMS_FLAT, d.PAST_ITEM_COUNTS, d.NUM_PAST_EVENTS,
    d.NUM_PAST_CIS, d.NUM_PAST_CATEGORIES, d.LAST_TIMESTAMP,
)
#: The streaming worker's state columns of user_category_sequence.
STATE_FEATURES = (
    d.LOG_ITEMS, d.LOG_CATEGORIES, d.LOG_TIMESTAMPS, d.LOG_EVENT_IDS, d.APPLIED_PARTITION,
    d.APPLIED_OFFSET,
)
SEQUENCE_VIEW = d.user_category_sequence.name
FEATURE_SERVICE = d.ccrec_v1.name

#: Every Feast object, in dependency order (what `apply` registers).
OBJECTS = (
    d.user, d.scope,
    d.user_category_sequence_log, d.user_category_sequence_push,
    d.user_profile_log, d.user_profile_push,
    d.category_popularity_log, d.category_popularity_push,
    d.user_category_sequence, d.user_profile, d.category_popularity,
    d.ccrec_v1,
)
#: push source → its feature view and parquet directory (relative to the root).
_PUSHED = {
    d.user_category_sequence_push.name: (d.user_category_sequence, d.user_category_sequence_log),
    d.user_profile_push.name: (d.user_profile, d.user_profile_log),
    d.category_popularity_push.name: (d.category_popularity, d.category_popularity_log),
}


def repo_config(
    root: Path | str = FEATURES_DIR,
    online: OnlineKind = "sqlite",
    *,
    redis_url: str | None = None,
    project: str = "ccrec",
) -> RepoConfig:
    """The configuration of features/feature_store.yaml, for any root and online store.

    Args:
        root: the repository root; registry, SQLite file and parquet logs go in root/data.
        online: ``sqlite`` (default) or ``redis``.
        redis_url: ``host:port[,db=N]``; default ``$CCREC_REDIS_URL`` or 127.0.0.1:6379.
        project: the Feast project (namespaces the Redis keys).
    """
    root = Path(root).resolve()
    if online == "redis":
        url = redis_url or os.environ.get("CCREC_REDIS_URL", DEFAULT_REDIS)
        # The worker de-duplicates itself, and out-of-order events must be able to
        # rewrite a row with an unchanged timestamp: last write wins.
        store_config = RedisOnlineStoreConfig(connection_string=url, skip_dedup=True)
    elif online == "sqlite":
        store_config = SqliteOnlineStoreConfig(path=str(root / "data" / "online_store.db"))
    else:
        raise ValueError(f"online store must be sqlite or redis, not {online!r}")
    return RepoConfig(
        project=project,
        provider="local",
        registry=str(root / "data" / "registry.db"),
        online_store=store_config,
        offline_store=DaskOfflineStoreConfig(),
        repo_path=root,
        entity_key_serialization_version=3,
    )


def open_store(
    root: Path | str = FEATURES_DIR,
    online: OnlineKind = "sqlite",
    *,
    redis_url: str | None = None,
    project: str = "ccrec",
    apply: bool = True,
) -> FeatureStore:
    """A FeatureStore on ``root``; registers the definitions first unless ``apply=False``."""
    config = repo_config(root, online, redis_url=redis_url, project=project)
    store = FeatureStore(repo_path=str(config.repo_path), config=config)
    if apply:
        apply_definitions(store)
    return store


def _empty_log(view, source) -> pa.Table:
    key = d.SCOPE if view.name == d.category_popularity.name else d.USER_ID
    fields = [pa.field(key, pa.string())]
    for feature in view.features:
        fields.append(pa.field(feature.name, _arrow_type(feature.dtype)))
    fields += [pa.field(d.EVENT_TIMESTAMP, pa.timestamp("us", tz="UTC")),
               pa.field(d.CREATED, pa.timestamp("us", tz="UTC"))]
    return pa.schema(fields).empty_table()


def _arrow_type(dtype) -> pa.DataType:
    text = str(dtype)
    base = pa.string() if "String" in text else pa.int64()
    return pa.list_(base) if text.startswith("Array") else base


def apply_definitions(store: FeatureStore) -> None:
    """Register every object and create the (empty) parquet logs if missing."""
    root = Path(store.repo_path)
    for view, source in (v for v in _PUSHED.values()):
        directory = root / source.path
        if not directory.exists() or not any(directory.glob("*.parquet")):
            directory.mkdir(parents=True, exist_ok=True)
            pq.write_table(_empty_log(view, source), directory / "part-00000-empty.parquet")
    store.apply(list(OBJECTS))


def _write_part(root: Path, source, table: pa.Table) -> Path:
    directory = root / source.path
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = directory / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
    staging = path.with_suffix(".tmp")
    pq.write_table(table, staging)
    os.replace(staging, path)
    return path


def push_rows(store: FeatureStore, push_source: str, rows: pd.DataFrame) -> None:
    """Append ``rows`` to the offline log, then write them online.

    Same effect as ``store.push(push_source, rows, to=PushMode.ONLINE_AND_OFFLINE)``, but the
    offline write appends one parquet part per call: Feast 0.67's file offline
    store re-reads and rewrites the whole log on every push (quadratic).
    The offline part is written first: a crash between the two writes leaves an
    offline row that the replay writes again, identically.
    """
    if rows.empty:
        return
    view, source = _PUSHED[push_source]
    columns = _empty_log(view, source).schema
    table = pa.Table.from_pandas(rows[list(columns.names)], schema=columns, preserve_index=False)
    _write_part(Path(store.repo_path), source, table)
    # What store.push(push_source, rows, to=PushMode.ONLINE) does for our one view per
    # push source, without scanning every feature view in the registry on each call.
    store.write_to_online_store(view.name, rows)


def _feature_refs(view: str, names: Iterable[str]) -> list[str]:
    return [f"{view}:{name}" for name in names]


def read_state(store: FeatureStore, user_ids: Sequence[str]) -> dict[str, list]:
    """The worker state and sequence features of ``user_ids`` (columns → lists, None if unknown)."""
    refs = _feature_refs(SEQUENCE_VIEW, SEQUENCE_FEATURES + STATE_FEATURES)
    rows = [{d.USER_ID: u} for u in user_ids]
    return store.get_online_features(features=refs, entity_rows=rows).to_dict()


def split_items(flat: Sequence[int] | None, counts: Sequence[int] | None) -> list[list[int]]:
    """past_items_flat + past_item_counts → one item list per category interaction."""
    if not flat or not counts:
        return []
    bounds = np.r_[0, np.cumsum(counts)]
    return [list(map(int, flat[bounds[i]:bounds[i + 1]])) for i in range(len(counts))]


def read_user_features(store: FeatureStore, user_ids: Sequence[str]) -> dict[str, dict]:
    """What model version 1 needs for each user: user id → features.

    Each value has ``past_categories``, ``past_starts`` (epoch s), ``past_items``
    (one item list per CI), the ``num_past_*`` counts, ``last_timestamp``,
    ``user_features`` (f_t indices) and ``popular_categories`` /
    ``popular_counts``. A user never seen has empty lists and zero counts.
    """
    service = store.get_feature_service(FEATURE_SERVICE)
    rows = [{d.USER_ID: u, d.SCOPE: d.GLOBAL_SCOPE} for u in user_ids]
    data = store.get_online_features(features=service, entity_rows=rows).to_dict()
    out = {}
    for i, user_id in enumerate(user_ids):
        value = {name: data[name][i] for name in data if name not in (d.USER_ID, d.SCOPE)}
        for name in (d.PAST_CATEGORIES, d.PAST_STARTS, d.USER_FEATURES, d.POPULAR_CATEGORIES,
                     d.POPULAR_COUNTS):
            value[name] = list(value.get(name) or [])
        for name in (d.NUM_PAST_EVENTS, d.NUM_PAST_CIS, d.NUM_PAST_CATEGORIES, d.LAST_TIMESTAMP):
            value[name] = int(value.get(name) or 0)
        value["past_items"] = split_items(value.pop(d.PAST_ITEMS_FLAT, None),
                                          value.pop(d.PAST_ITEM_COUNTS, None))
        out[user_id] = value
    return out


def sequence_columns(past: pd.DataFrame) -> pd.DataFrame:
    """:func:`ccrec.data.sequences.past_sequences` output → the feature view's columns.

    The nested ``past_items`` becomes ``past_items_flat`` + ``past_item_counts``;
    the ``user`` column is kept. Used by the streaming worker and by tests that
    compare with the batch path.
    """
    out = past[["user", "past_categories", "past_starts"]].copy()
    items = [list(x) for x in past["past_items"]]
    out[d.PAST_ITEMS_FLAT] = [[int(i) for ci in x for i in ci] for x in items]
    out[d.PAST_ITEM_COUNTS] = [[len(ci) for ci in x] for x in items]
    out[d.PAST_CATEGORIES] = [list(map(int, x)) for x in past["past_categories"]]
    out[d.PAST_STARTS] = [list(map(int, x)) for x in past["past_starts"]]
    for name in (d.NUM_PAST_EVENTS, d.NUM_PAST_CIS, d.NUM_PAST_CATEGORIES, d.LAST_TIMESTAMP):
        out[name] = past[name].to_numpy(np.int64)
    return out


def historical_features(
    store: FeatureStore, user_ids: Sequence[str], cutoffs: Sequence[int]
) -> pd.DataFrame:
    """Point-in-time sequence features: for each (user, cutoff), the row the online
    store served just before ``cutoff`` (epoch s; events at the cutoff are future,
    as in :mod:`ccrec.data.prepare`). Columns: user_id, cutoff, SEQUENCE_FEATURES."""
    entity_df = pd.DataFrame({
        d.USER_ID: list(user_ids),
        d.EVENT_TIMESTAMP: pd.to_datetime(np.asarray(cutoffs, np.int64) - 1, unit="s", utc=True),
    })
    refs = _feature_refs(SEQUENCE_VIEW, SEQUENCE_FEATURES)
    found = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    # Feast's file store drops entity rows whose only feature rows are later than the
    # entity timestamp; they had no features yet (empty lists, zero counts).
    frame = entity_df.merge(found, on=[d.USER_ID, d.EVENT_TIMESTAMP], how="left")
    for name in SEQUENCE_FEATURES:
        if name.startswith(("past_",)):
            frame[name] = [list(x) if x is not None and not _is_na(x) else [] for x in frame[name]]
        else:
            frame[name] = frame[name].fillna(0).astype(np.int64)
    frame["cutoff"] = np.asarray(cutoffs, np.int64)
    return frame.drop(columns=[d.EVENT_TIMESTAMP])


def _is_na(value) -> bool:
    return isinstance(value, float) and np.isnan(value)


def load_static_features(store: FeatureStore, prepared, top: int = 100) -> dict[str, int]:
    """Push a prepared data set's user profiles (f_t) and category popularity.

    Args:
        store: the feature store.
        prepared: a :class:`ccrec.data.prepared.PreparedData`.
        top: how many of the most popular categories to keep.
    """
    now = pd.Timestamp.now(tz="UTC")
    users = prepared.vocab["users"]
    profiles = prepared.examples.drop_duplicates("user")
    profile_rows = pd.DataFrame({
        d.USER_ID: [users[u] for u in profiles["user"]],
        d.USER_FEATURES: [list(map(int, f)) for f in profiles["user_features"]],
        d.EVENT_TIMESTAMP: now, d.CREATED: now,
    })
    push_rows(store, d.user_profile_push.name, profile_rows)
    counts = prepared.events()["category"].value_counts().head(top)
    popularity = pd.DataFrame({
        d.SCOPE: [d.GLOBAL_SCOPE],
        d.POPULAR_CATEGORIES: [counts.index.astype(np.int64).tolist()],
        d.POPULAR_COUNTS: [counts.to_numpy(np.int64).tolist()],
        d.EVENT_TIMESTAMP: [now], d.CREATED: [now],
    })
    push_rows(store, d.category_popularity_push.name, popularity)
    return {"user_profiles": len(profile_rows), "categories": len(counts)}
