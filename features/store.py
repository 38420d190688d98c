"""The Python API around the Feast repository: open, apply, write, read.

A store is one environment's ``feature_store.yaml`` (:data:`~features.environments.ENVIRONMENTS`)
loaded on a *root* directory, Feast's ``repo_path``: every relative path in the
file and in the definitions (file registry, SQLite file, parquet logs) resolves
under the root, ``features/`` by default, any directory for tests and
deployments.

Serving reads a user's features with :class:`UserFeatureReader`; the
streaming worker writes with :func:`push_rows`; training data comes from
:func:`historical_features`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from feast import Entity, FeatureService, FeatureStore, FeatureView, PushSource, RepoConfig
from feast.data_source import DataSource
from feast.type_map import feast_value_type_to_pa
from feast.types import Array

from features import definitions as d
from features.environments import ENVIRONMENTS, FEATURES_DIR
from features.online import OnlineRows, ViewRows

#: Every Feast object of the definitions, in their order (what `apply` registers).
OBJECTS = tuple(obj for obj in vars(d).values()
                if isinstance(obj, Entity | DataSource | FeatureView | FeatureService))
#: push source name → the feature view it feeds.
PUSHED = {view.stream_source.name: view for view in OBJECTS
          if isinstance(view, FeatureView) and isinstance(view.stream_source, PushSource)}
SEQUENCE_VIEW = d.user_category_sequence.name
FEATURE_SERVICE = d.ccrec_v1.name
#: The model-facing features of user_category_sequence, in schema order (those of the service).
SEQUENCE_FEATURES = tuple(
    f.name for p in d.ccrec_v1.feature_view_projections if p.name == SEQUENCE_VIEW
    for f in p.features)
#: The streaming worker's state columns of user_category_sequence.
STATE_FEATURES = tuple(f.name for f in d.user_category_sequence.features
                       if f.name not in SEQUENCE_FEATURES)

_VARIABLE = re.compile(r"\$\{(\w+)\}")


def load_config(
    root: Path | str = FEATURES_DIR,
    environment: str = "sqlite",
    *,
    project: str | None = None,
    redis_url: str | None = None,
) -> RepoConfig:
    """An environment's ``feature_store.yaml`` on ``root``.

    Args:
        root: the store's root (Feast's repo_path); relative paths resolve under it.
        environment: a key of :data:`~features.environments.ENVIRONMENTS`.
        project: replaces the file's Feast project (tests: one project each).
        redis_url: replaces a Redis online store's connection string
            (``host:port[,db=N,password=P]``); default ``$CCREC_REDIS_URL``, else the file's.

    Raises:
        ValueError: unknown environment, or a ``${VAR}`` of the file is unset.
    """
    path = ENVIRONMENTS.get(environment)
    if path is None:
        raise ValueError(f"unknown Feast environment {environment!r}; "
                         f"choose one of {sorted(ENVIRONMENTS)}")
    # As feast.repo_config.load_repo_config: ${VAR}s expand from the environment.
    values: dict[str, Any] = yaml.safe_load(os.path.expandvars(path.read_text()))
    if project is not None:
        values["project"] = project
    redis_url = redis_url or os.environ.get("CCREC_REDIS_URL")
    online = values.get("online_store")
    if redis_url and isinstance(online, dict) and online.get("type") == "redis":
        values["online_store"] = {**online, "connection_string": redis_url}
    unset = sorted({name for text in _strings(values) for name in _VARIABLE.findall(text)})
    if unset:
        raise ValueError(f"{path} needs the environment variable(s) {', '.join(unset)}")
    return RepoConfig(repo_path=Path(root).resolve(), **values)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def open_store(
    root: Path | str = FEATURES_DIR,
    environment: str = "sqlite",
    *,
    project: str | None = None,
    redis_url: str | None = None,
    apply: bool = True,
) -> FeatureStore:
    """A FeatureStore of ``environment`` on ``root`` (see :func:`load_config`); registers
    the definitions and creates the empty parquet logs first unless ``apply=False``."""
    config = load_config(root, environment, project=project, redis_url=redis_url)
    store = FeatureStore(repo_path=str(config.repo_path), config=config)
    if apply:
        apply_definitions(store)
    return store


def _log_schema(view: FeatureView) -> pa.Schema:
    """The columns of a view's offline log: join keys, features, event and created time."""
    entities = {e.name: e for e in OBJECTS if isinstance(e, Entity)}
    keys = [pa.field(entities[name].join_key, feast_value_type_to_pa(entities[name].value_type))
            for name in view.entities]
    features = [pa.field(f.name, feast_value_type_to_pa(f.dtype.to_value_type()))
                for f in view.features]
    source = view.batch_source
    times = [pa.field(name, pa.timestamp("us", tz="UTC"))
             for name in (source.timestamp_field, source.created_timestamp_column)]
    return pa.schema(keys + features + times)


def apply_definitions(store: FeatureStore) -> None:
    """Register every object and create the (empty) parquet logs if missing."""
    root = Path(store.repo_path)
    for view in PUSHED.values():
        directory = root / view.batch_source.path
        if not directory.exists() or not any(directory.glob("*.parquet")):
            directory.mkdir(parents=True, exist_ok=True)
            pq.write_table(_log_schema(view).empty_table(),
                           directory / "part-00000-empty.parquet")
    store.apply(list(OBJECTS))


def _write_part(directory: Path, table: pa.Table) -> Path:
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
    view = PUSHED[push_source]
    columns = _log_schema(view)
    table = pa.Table.from_pandas(rows[list(columns.names)], schema=columns, preserve_index=False)
    _write_part(Path(store.repo_path) / view.batch_source.path, table)
    # What store.push(push_source, rows, to=PushMode.ONLINE) does for our one view per
    # push source, without scanning every feature view in the registry on each call.
    store.write_to_online_store(view.name, rows)


def push_view_rows(online: OnlineRows, rows: ViewRows) -> None:
    """:func:`push_rows` for rows given column by column (the streaming worker's path):
    the offline log part from arrow arrays, then :meth:`OnlineRows.write`."""
    if not len(rows):
        return
    source = online.view.batch_source
    table = rows.to_arrow(_log_schema(online.view), online.join_key, source.timestamp_field,
                          source.created_timestamp_column)
    _write_part(online.root / source.path, table)
    online.write(rows)


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


_LIST_FEATURES = (d.PAST_CATEGORIES, d.PAST_STARTS, d.USER_FEATURES, d.POPULAR_CATEGORIES,
                  d.POPULAR_COUNTS)
_COUNT_FEATURES = (d.NUM_PAST_EVENTS, d.NUM_PAST_CIS, d.NUM_PAST_CATEGORIES, d.LAST_TIMESTAMP)


class UserFeatureReader:
    """What model version 1 needs for each user, from the online store.

    :meth:`read` gives user id → feature name → value, with the names of
    :mod:`features.definitions`: ``PAST_CATEGORIES``, ``PAST_STARTS`` (epoch s),
    ``PAST_ITEMS`` (one item list per CI, in place of the flat list and counts),
    ``NUM_PAST_*``, ``LAST_TIMESTAMP``, ``USER_FEATURES`` (f_t indices),
    ``POPULAR_CATEGORIES`` / ``POPULAR_COUNTS``. A user never seen has empty lists
    and zero counts.

    The feature service is resolved on the first read (the store may be applied after the
    reader opens) and kept. On SQLite and Redis each of its views is
    then read with :class:`~features.online.OnlineRows` (one query or pipeline per
    view, in Feast's storage format): Feast's ``get_online_features`` rebuilds the
    service's views from the registry's protobufs, type-checking every field, on
    each call, which costs about 20 ms, several times the model's answer. Other
    online stores are read through ``get_online_features``.

    Args:
        store: the Feast store.
    """

    def __init__(self, store: FeatureStore) -> None:
        self.store = store
        self.service: FeatureService | None = None
        self.views: list[tuple[OnlineRows, list[str]]] | None = None

    def _resolve(self) -> FeatureService:
        if self.service is None:
            service = self.store.get_feature_service(FEATURE_SERVICE)
            try:
                self.views = [(OnlineRows(self.store, self.store.get_feature_view(p.name)),
                               [f.name for f in p.features])
                              for p in service.feature_view_projections]
            except ValueError:  # an online store OnlineRows does not read
                self.views = None
            self.service = service
        return self.service

    def read(self, user_ids: Sequence[str]) -> dict[str, dict]:
        service = self._resolve()
        columns = self._online(user_ids) if self.views is not None \
            else self._feast(service, user_ids)
        out = {}
        for i, user_id in enumerate(user_ids):
            value = {name: _ints(columns[name][i]) for name in _LIST_FEATURES}
            value.update({name: int(columns[name][i] or 0) for name in _COUNT_FEATURES})
            value[d.PAST_ITEMS] = split_items(_ints(columns[d.PAST_ITEMS_FLAT][i]),
                                              _ints(columns[d.PAST_ITEM_COUNTS][i]))
            out[user_id] = value
        return out

    def _online(self, user_ids: Sequence[str]) -> dict[str, list]:
        assert self.views is not None
        columns: dict[str, list] = {}
        for rows, features in self.views:
            if rows.join_key == d.SCOPE:  # one row for every user
                found = rows.read([d.GLOBAL_SCOPE], features) * len(user_ids)
            else:
                found = rows.read(list(user_ids), features)
            for name in features:
                columns[name] = [(row or {}).get(name) for row in found]
        return columns

    def _feast(self, service: FeatureService, user_ids: Sequence[str]) -> dict[str, list]:
        rows = [{d.USER_ID: u, d.SCOPE: d.GLOBAL_SCOPE} for u in user_ids]
        return self.store.get_online_features(features=service, entity_rows=rows).to_dict()


def _ints(values: Any) -> list[int]:
    """A stored int64 list (ndarray, list or None) as Python ints."""
    return [] if values is None else [int(v) for v in values]


def read_user_features(store: FeatureStore, user_ids: Sequence[str]) -> dict[str, dict]:
    """:meth:`UserFeatureReader.read` once (a reader kept open reads faster)."""
    return UserFeatureReader(store).read(user_ids)


def sequence_columns(past: pd.DataFrame) -> pd.DataFrame:
    """:func:`ccrec.data.sequences.past_sequences` output → the feature view's columns.

    The nested ``past_items`` becomes ``past_items_flat`` + ``past_item_counts``;
    the ``user`` column is kept. Used by the streaming worker and by tests that
    compare with the batch path.
    """
    out = past[["user"]].copy()
    items = [list(x) for x in past[d.PAST_ITEMS]]
    out[d.PAST_CATEGORIES] = [list(map(int, x)) for x in past[d.PAST_CATEGORIES]]
    out[d.PAST_STARTS] = [list(map(int, x)) for x in past[d.PAST_STARTS]]
    out[d.PAST_ITEMS_FLAT] = [[int(i) for ci in x for i in ci] for x in items]
    out[d.PAST_ITEM_COUNTS] = [[len(ci) for ci in x] for x in items]
    for name in _COUNT_FEATURES:
        out[name] = past[name].to_numpy(np.int64)
    return out


def batch_sequence_features(past: pd.DataFrame, user_ids: Sequence[str]) -> dict[str, dict]:
    """:func:`~ccrec.data.sequences.past_sequences` output (its ``user`` indexes
    ``user_ids``) → user id → sequence feature → value (ints, lists of ints): what the
    stream must serve for those events."""
    rows = sequence_columns(past)
    return {user_ids[u]: {k: _plain(row[k]) for k in SEQUENCE_FEATURES}
            for u, (_, row) in zip(rows["user"], rows.iterrows(), strict=True)}


def online_sequence_features(store: FeatureStore, user_ids: Sequence[str]) -> dict[str, dict]:
    """user id → sequence feature → value as Feast serves it (None: the user has no row)."""
    data = read_state(store, list(user_ids))
    return {u: {k: _plain(data[k][i]) for k in SEQUENCE_FEATURES}
            for i, u in enumerate(user_ids)}


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, list | np.ndarray):
        return [int(v) for v in value]
    return int(value)


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
    lists = {f.name for f in d.user_category_sequence.features if isinstance(f.dtype, Array)}
    for name in SEQUENCE_FEATURES:
        if name in lists:
            frame[name] = [list(x) if isinstance(x, list | np.ndarray) else [] for x in frame[name]]
        else:
            frame[name] = frame[name].fillna(0).astype(np.int64)
    frame["cutoff"] = np.asarray(cutoffs, np.int64)
    return frame.drop(columns=[d.EVENT_TIMESTAMP])


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
