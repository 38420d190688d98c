"""Batched reads and writes of one feature view's online rows, in Feast's own storage format.

The streaming worker writes thousands of users per micro-batch. Feast's
``write_to_online_store`` converts a DataFrame value by value into protobuf
messages, and ``get_online_features`` builds a response object per value;
both cost more than the feature computation itself. :class:`OnlineRows` reads
and writes exactly what Feast's SQLite and Redis online stores hold (so that
``get_online_features`` serves it), with

* rows passed column by column (:class:`ViewRows`), no per-row pandas;
* the protobuf ``Value`` bytes encoded for a whole column at once (the
  varints with numpy), not one message object per value;
* one Redis pipeline or one SQLite ``executemany`` per batch.

The layout is Feast 0.67's (``RedisOnlineStore``: one hash per entity key and
project, field ``mmh3("<view>:<feature>")``, ``_ts:<view>`` the event time;
``SqliteOnlineStore``: one row per entity and feature in ``<project>_<view>``),
with Feast's field hashes; the entity key serialization is checked against
Feast's at start. ``tests/features/test_online_rows.py`` checks the stored
bytes against Feast's in both directions.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from feast import FeatureStore, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3, compute_table_id, compute_versioned_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value, ValueType
from feast.types import Array, Bytes, Int64
from google.protobuf.timestamp_pb2 import Timestamp


@dataclass(frozen=True)
class ListColumn:
    """A column of int64 lists: row ``i`` is ``values[offsets[i]:offsets[i + 1]]``."""

    values: np.ndarray  # int64
    offsets: np.ndarray  # int64, one more than rows

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]]) -> ListColumn:
        lengths = np.fromiter(map(len, rows), np.int64, len(rows))
        values = np.concatenate([np.asarray(r, np.int64) for r in rows]) if rows else []
        return cls(np.asarray(values, np.int64), np.r_[0, np.cumsum(lengths)])


#: A column: int64 scalars (ndarray), int64 lists (ListColumn) or bytes.
Column = np.ndarray | ListColumn | list[bytes]


@dataclass
class ViewRows:
    """Rows of one feature view, column by column.

    Args:
        keys: the entity's join key value of each row (the user ids).
        event_time: each row's event timestamp, epoch seconds (int64).
        created: when the rows were computed, epoch seconds.
        columns: feature name → column, in the view's types (Int64: ndarray,
            Array(Int64): ListColumn, Bytes: list of bytes; the types the stream
            worker writes).
    """

    keys: list[str]
    event_time: np.ndarray
    created: float
    columns: dict[str, Column]

    def __len__(self) -> int:
        return len(self.keys)

    def to_arrow(self, schema: pa.Schema, join_key: str, event_field: str,
                 created_field: str) -> pa.Table:
        """The rows as an arrow table of ``schema`` (the view's offline log)."""
        n = len(self.keys)
        micros = self.event_time.astype(np.int64) * 1_000_000
        created = np.full(n, int(self.created * 1_000_000), np.int64)
        arrays = []
        for field in schema:
            if field.name == join_key:
                arrays.append(pa.array(self.keys, field.type))
            elif field.name == event_field:
                arrays.append(pa.array(micros, field.type))
            elif field.name == created_field:
                arrays.append(pa.array(created, field.type))
            else:
                column = self.columns[field.name]
                if isinstance(column, ListColumn):
                    arrays.append(pa.ListArray.from_arrays(
                        pa.array(column.offsets.astype(np.int32)), pa.array(column.values)))
                else:
                    arrays.append(pa.array(column, field.type))
        return pa.Table.from_arrays(arrays, schema=schema)


# ---- protobuf Value bytes, a column at a time ----------------------------------------------
# Value: bytes_val = 1, int64_val = 4, int64_list_val = 14; Int64List: repeated int64
# val = 1 (packed).
_BYTES, _INT64, _INT64_LIST, _LIST_VALUES = b"\n", b" ", b"r", b"\n"
_SMALL = [bytes([n]) if n < 128 else bytes([(n & 0x7F) | 0x80, n >> 7]) for n in range(1 << 14)]


def _varint(n: int) -> bytes:
    """One non-negative int as a protobuf varint."""
    if n < 1 << 14:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varints(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """The protobuf varints of int64 ``values`` (negatives as 10 bytes, as protobuf does),
    concatenated, and the byte offset of each value's start (plus the end)."""
    u = np.asarray(values, np.int64).view(np.uint64)
    lengths = np.ones(len(u), np.int64)
    for k in range(1, 10):
        lengths += u >= np.uint64(1 << (7 * k))
    width = int(lengths.max()) if len(u) else 1
    groups = np.empty((len(u), width), np.uint8)
    for k in range(width):
        low7 = ((u >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        groups[:, k] = low7 | (np.uint8(0x80) * (lengths > k + 1)).astype(np.uint8)
    data = groups[np.arange(width) < lengths[:, None]].tobytes()
    return data, np.r_[0, np.cumsum(lengths)]


def encode_int64(column: np.ndarray) -> list[bytes]:
    data, at = varints(column)
    bounds = at.tolist()
    return [_INT64 + data[bounds[i]:bounds[i + 1]] for i in range(len(column))]


def encode_int64_lists(column: ListColumn) -> list[bytes]:
    data, at = varints(column.values)
    starts, ends = at[column.offsets[:-1]].tolist(), at[column.offsets[1:]].tolist()
    out = []
    for start, end in zip(starts, ends, strict=True):
        size = end - start
        if size == 0:
            out.append(_INT64_LIST + b"\x00")
        else:
            length = _varint(size)
            out.append(_INT64_LIST + _varint(1 + len(length) + size) + _LIST_VALUES + length
                       + data[start:end])
    return out


def encode_bytes(column: list[bytes]) -> list[bytes]:
    return [_BYTES + _varint(len(b)) + b for b in column]


_ENCODERS = {Int64: encode_int64, Array(Int64): encode_int64_lists, Bytes: encode_bytes}


def _decode(value: Value) -> Any:
    """A stored Value → ndarray (int64 list), int or bytes (None: no value)."""
    kind = value.WhichOneof("val")
    if kind == "int64_list_val":
        values = value.int64_list_val.val
        return np.fromiter(values, np.int64, len(values))
    return None if kind is None else getattr(value, kind)


# ---- the online stores ---------------------------------------------------------------------
class OnlineRows:
    """Reads and writes one feature view's online rows in batches (SQLite or Redis).

    Args:
        store: the Feast store (its online store's own connection is used).
        view: the feature view (one entity with one string join key).

    Raises:
        ValueError: another online store type, or Redis without ``skip_dedup``
            (the worker writes rows whose event time may not advance).
    """

    def __init__(self, store: FeatureStore, view: FeatureView) -> None:
        config = store.config
        self.config, self.view = config, view
        self.root = Path(store.repo_path)  # relative paths of the definitions resolve here
        self.join_key = view.entity_columns[0].name
        self.types = {f.name: f.dtype for f in view.features}
        versioned = config.registry.enable_online_feature_view_versioning
        self.name = compute_versioned_name(view, versioned)
        join = self.join_key.encode()
        self._key_prefix = (struct.pack("<III", 1, ValueType.STRING, len(join)) + join
                            + struct.pack("<I", ValueType.STRING))
        self._check_entity_keys()
        online = store._get_provider().online_store
        kind = config.online_store.type
        if kind == "sqlite":
            self.conn = online._get_conn(config)
            # A write-ahead log: one batch's thousands of upserts cost one sequential log
            # write instead of a rollback journal of every page they touch; synchronous
            # NORMAL keeps every commit across a process crash (a power loss may lose the
            # last ones, as Redis' default once-a-second fsync does). A 256 MB page cache
            # keeps the table's index in memory for ~10^6 users.
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-262144"):
                self.conn.execute(f"PRAGMA {pragma}")
            table = compute_table_id(config.project, view, versioned)
            self.table = '"' + table.replace('"', '""') + '"'
            self.redis = None
        elif kind == "redis":
            if not config.online_store.skip_dedup:
                raise ValueError("the Redis online store needs skip_dedup: true for the stream "
                                 "worker (out-of-order events keep the row's event time)")
            self.redis = online._get_client(config.online_store)
            if not hasattr(self.redis, "connection_pool"):
                raise ValueError("the stream worker writes a single Redis (or a Sentinel "
                                 "master), not a Redis Cluster")
            self.fields = {name: _mmh3(f"{self.name}:{name}") for name in self.types}
            self.ts_field = f"_ts:{self.name}".encode()
            self.ttl = config.online_store.key_ttl_seconds
        else:
            raise ValueError(f"online store {kind!r}: the stream worker writes SQLite or Redis")

    def _entity_keys(self, keys: Sequence[str]) -> list[bytes]:
        """Feast's serialized entity key of each join key value (serialize_entity_key,
        version 3, one string key: a fixed prefix, the value's length and UTF-8)."""
        prefix = self._key_prefix
        out = []
        for key in keys:
            raw = key.encode()
            out.append(prefix + struct.pack("<I", len(raw)) + raw)
        return out

    def _check_entity_keys(self) -> None:
        sample = "user-é"
        feast = serialize_entity_key(
            EntityKey(join_keys=[self.join_key], entity_values=[Value(string_val=sample)]),
            self.config.entity_key_serialization_version)
        if self._entity_keys([sample])[0] != feast:
            raise RuntimeError("Feast serializes entity keys differently from OnlineRows "
                               "(a Feast upgrade?); features.online must follow it")

    def _redis_keys(self, keys: Sequence[str]) -> list[bytes]:
        """As Feast's ``_redis_key``: the serialized entity key, then the project."""
        project = self.config.project.encode()
        return [key + project for key in self._entity_keys(keys)]

    def read(self, keys: Sequence[str], features: Sequence[str]) -> list[dict[str, Any] | None]:
        """Each key's stored ``features`` (name → value; a missing one is absent), or None."""
        if self.redis is not None:
            return self._read_redis(keys, features)
        return self._read_sqlite(keys, features)

    def _read_redis(self, keys, features) -> list[dict[str, Any] | None]:
        fields = [self.fields[name] for name in features]
        replies = self._round_trip([("HMGET", name, *fields) for name in self._redis_keys(keys)])
        out: list[dict[str, Any] | None] = []
        for reply in replies:
            found = {name: _decode(Value.FromString(raw))
                     for name, raw in zip(features, reply, strict=True) if raw is not None}
            out.append(found or None)
        return out

    def _read_sqlite(self, keys, features) -> list[dict[str, Any] | None]:
        serialized = self._entity_keys(keys)
        found: dict[bytes, dict[str, Any]] = {}
        names = ",".join("?" * len(features))
        for lo in range(0, len(serialized), 10_000):
            chunk = serialized[lo:lo + 10_000]
            rows = self.conn.execute(
                f"SELECT entity_key, feature_name, value FROM {self.table} "
                f"WHERE entity_key IN ({','.join('?' * len(chunk))}) "
                f"AND feature_name IN ({names})", [*chunk, *features])
            for entity, name, raw in rows:
                found.setdefault(entity, {})[name] = _decode(Value.FromString(raw))
        return [found.get(k) for k in serialized]

    def write(self, rows: ViewRows) -> None:
        """Write every row (all of the view's features), replacing what is stored."""
        encoded = {name: _ENCODERS[self.types[name]](rows.columns[name]) for name in self.types}
        if self.redis is not None:
            self._write_redis(rows, encoded)
        else:
            self._write_sqlite(rows, encoded)

    def _write_redis(self, rows: ViewRows, encoded: dict[str, list[bytes]]) -> None:
        fields = [(self.fields[name], values) for name, values in encoded.items()]
        commands = []
        for i, (name, seconds) in enumerate(zip(self._redis_keys(rows.keys),
                                                rows.event_time.tolist(), strict=True)):
            command = ["HSET", name, self.ts_field, Timestamp(seconds=seconds).SerializeToString()]
            for field, values in fields:
                command += (field, values[i])
            commands.append(command)
            if self.ttl:
                commands.append(("EXPIRE", name, self.ttl))
        self._round_trip(commands)

    def _round_trip(self, commands: list) -> list:
        """Send ``commands`` in one round trip and return the raw replies (a pipeline
        without redis-py's per-reply callbacks, which cost more than Redis itself here)."""
        pool = self.redis.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            return [conn.read_response() for _ in commands]
        except BaseException:
            conn.disconnect()  # replies may be left unread
            raise
        finally:
            pool.release(conn)

    def _write_sqlite(self, rows: ViewRows, encoded: dict[str, list[bytes]]) -> None:
        # As SqliteOnlineStore.online_write_batch: times as Feast's sqlite3 adapter stores
        # them (the naive UTC time's .timestamp(), whole seconds), value_text the decimal
        # of an int64 (None for lists).
        created = _sqlite_time(rows.created)
        times = [_sqlite_time(t) for t in rows.event_time.tolist()]
        keys = self._entity_keys(rows.keys)
        records = []
        for name, values in encoded.items():
            texts = (rows.columns[name].tolist() if self.types[name] == Int64
                     else [None] * len(keys))
            records.extend(zip(keys, [name] * len(keys), values, map(_text, texts), times,
                               [created] * len(keys), strict=True))
        records.sort(key=_first)
        with self.conn:
            self.conn.executemany(
                f"INSERT INTO {self.table} (entity_key, feature_name, value, value_text, "
                "event_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
                "value_text = excluded.value_text, event_ts = excluded.event_ts, "
                "created_ts = excluded.created_ts", records)


def _sqlite_time(seconds: float) -> int:
    return int(datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).timestamp())


def _first(record: tuple) -> bytes:
    return record[0]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
