"""features.online.OnlineRows writes and reads exactly what Feast's own online stores do.

Each row set goes into one project through Feast (``write_to_online_store`` of
a DataFrame) and into another through OnlineRows; the stored bytes must be
the same (Redis hashes, SQLite rows), Feast must serve OnlineRows' rows, and
OnlineRows must read Feast's.
"""

from __future__ import annotations

import sqlite3
import uuid

import numpy as np
import pandas as pd
import pytest
import redis

from features import definitions as d
from features.online import ListColumn, OnlineRows, ViewRows, varints
from features.store import (
    SEQUENCE_FEATURES,
    SEQUENCE_VIEW,
    STATE_FEATURES,
    open_store,
    push_rows,
    push_view_rows,
    read_state,
)

CREATED = 1_700_000_123
USERS = ["alice", "bób", "c" * 200]
LISTS = [[1, 2, 300], [], [2**40, 0, 7]]  # empty, multi-byte and 6-byte varints
BLOBS = [b"\x00state\xff", b"", b"y" * 300]


def _rows() -> ViewRows:
    columns = {}
    for k, field in enumerate(d.user_category_sequence.features):
        if field.name == d.WORKER_STATE:
            columns[field.name] = BLOBS
        elif "Array" in str(field.dtype):
            columns[field.name] = ListColumn.of([[v + k for v in row] for row in LISTS])
        else:
            columns[field.name] = np.array([k, 10**12 + k, 5], np.int64)
    return ViewRows(USERS, np.array([100, 0, 2_000_000_000], np.int64), CREATED, columns)


def _frame(rows: ViewRows) -> pd.DataFrame:
    frame = pd.DataFrame({d.USER_ID: rows.keys})
    for name, column in rows.columns.items():
        if isinstance(column, ListColumn):
            frame[name] = [column.row(i).tolist() for i in range(len(column))]
        else:
            frame[name] = list(column)
    frame[d.EVENT_TIMESTAMP] = pd.to_datetime(rows.event_time, unit="s", utc=True)
    frame[d.CREATED] = pd.Timestamp(CREATED, unit="s", tz="UTC")
    return frame


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@pytest.fixture(params=["sqlite", "redis"])
def stores(request, tmp_path):
    """Two stores of one environment: Feast writes one, OnlineRows the other."""
    opened = [open_store(tmp_path / name, request.param, project=f"o_{uuid.uuid4().hex[:10]}")
              for name in ("feast", "ours")]
    yield request.param, opened
    for store in opened:
        store.teardown()


def _stored(kind: str, store) -> list:
    """Everything the online store holds for the sequence view, minus the project."""
    project = store.config.project
    if kind == "redis":
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        keys = sorted(k for k in client.scan_iter(match=b"*" + project.encode()))
        return [(k[:-len(project)], sorted(client.hgetall(k).items())) for k in keys]
    path = store.config.repo_path / store.config.online_store.path
    with sqlite3.connect(path) as conn:
        return conn.execute(
            f'SELECT entity_key, feature_name, value, value_text, event_ts, created_ts '
            f'FROM "{project}_{SEQUENCE_VIEW}" ORDER BY entity_key, feature_name').fetchall()


def test_the_stored_bytes_are_feasts(stores) -> None:
    kind, (feast_store, our_store) = stores
    rows = _rows()
    push_rows(feast_store, d.user_category_sequence_push.name, _frame(rows))
    push_view_rows(OnlineRows(our_store, our_store.get_feature_view(SEQUENCE_VIEW)), rows)
    stored = _stored(kind, our_store)
    assert len(stored) == (3 if kind == "redis" else 3 * len(rows.columns))
    assert stored == _stored(kind, feast_store)


def test_feast_serves_our_rows_and_we_read_feasts(stores) -> None:
    kind, (feast_store, our_store) = stores
    rows = _rows()
    push_rows(feast_store, d.user_category_sequence_push.name, _frame(rows))
    ours = OnlineRows(our_store, our_store.get_feature_view(SEQUENCE_VIEW))
    ours.write(rows)
    names = SEQUENCE_FEATURES + STATE_FEATURES
    served = read_state(our_store, [*USERS, "nobody"])
    want = _frame(rows)
    for name in names:
        assert served[name][:3] == [_plain(v) for v in want[name]], name
        assert served[name][3] is None
    feasts = OnlineRows(feast_store, feast_store.get_feature_view(SEQUENCE_VIEW))
    got = feasts.read([*USERS, "nobody"], names)
    assert got[3] is None
    for i in range(3):
        assert {k: _plain(v) for k, v in got[i].items()} == {
            name: _plain(want[name][i]) for name in names}


def test_the_offline_log_gets_the_same_rows(tmp_path) -> None:
    store = open_store(tmp_path)
    rows = _rows()
    push_view_rows(OnlineRows(store, store.get_feature_view(SEQUENCE_VIEW)), rows)
    parts = sorted((tmp_path / "data" / "offline" / SEQUENCE_VIEW).glob("part-2*.parquet"))
    logged = pd.read_parquet(parts[0])
    want = _frame(rows)
    assert list(logged.columns) == list(want.columns)
    for name in want.columns:
        assert [_plain(v) for v in logged[name]] == [_plain(v) for v in want[name]], name


def test_redis_keys_get_the_configured_ttl(tmp_path) -> None:
    store = open_store(tmp_path, "redis", project=f"o_{uuid.uuid4().hex[:10]}")
    try:
        store.config.online_store.key_ttl_seconds = 3600
        OnlineRows(store, store.get_feature_view(SEQUENCE_VIEW)).write(_rows())
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        keys = list(client.scan_iter(match=b"*" + store.config.project.encode()))
        assert len(keys) == 3 and all(0 < client.ttl(k) <= 3600 for k in keys)
    finally:
        store.teardown()


def test_redis_without_skip_dedup_is_refused(tmp_path) -> None:
    store = open_store(tmp_path, "redis", project=f"o_{uuid.uuid4().hex[:10]}", apply=False)
    store.config.online_store.skip_dedup = False
    with pytest.raises(ValueError, match="skip_dedup"):
        OnlineRows(store, d.user_category_sequence)


def test_varints_are_protobufs() -> None:
    """Hand-computed: 1 → 01; 300 → ac 02; -1 → ten bytes (two's complement)."""
    data, at = varints(np.array([1, 300, -1, 0], np.int64))
    assert data == bytes([1, 0xAC, 0x02] + [0xFF] * 9 + [0x01, 0])
    assert at.tolist() == [0, 1, 3, 13, 14]
