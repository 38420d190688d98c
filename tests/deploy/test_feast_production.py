"""The production Feast configuration against the real services.

deploy/feast/feature_store.yaml (SQL registry on PostgreSQL, Redis online store)
is loaded with Feast's own loader, with its ${VAR}s pointing at the PostgreSQL
(127.0.0.1:5432, database ``test``) and Redis (127.0.0.1:6379) that run on every
development machine and in CI. The test applies an entity + feature view + push
source, pushes a row and reads it back online.

Two sets of definitions go through it: a minimal self-contained one with
Feast's own API, and the real ones of features/definitions.py through the
runtime (features.store with the "production" environment): registered in
PostgreSQL, a user profile pushed to Redis with the key TTL and read back.

Isolation: the registry tables go into a fresh PostgreSQL schema (selected with
``search_path`` in the URL) that is dropped afterwards; the Feast project name is
unique, and every Redis key of that project is deleted afterwards.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
FEAST_YAML = REPO / "deploy" / "feast" / "feature_store.yaml"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def _services_up() -> str | None:
    try:
        with psycopg.connect(PG_DSN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return f"PostgreSQL at 127.0.0.1:5432 unreachable: {e}"
    try:
        redis.Redis(REDIS_HOST, REDIS_PORT, socket_connect_timeout=3).ping()
    except redis.RedisError as e:
        return f"Redis at 127.0.0.1:6379 unreachable: {e}"
    return None


@pytest.fixture
def production_env(monkeypatch: pytest.MonkeyPatch):
    """Environment for deploy/feast/feature_store.yaml, with cleanup."""
    problem = _services_up()
    if problem:
        # Both services are started before every session and CI run: a missing
        # one is a broken machine, not a reason to skip.
        pytest.fail(problem)
    suffix = uuid.uuid4().hex[:10]
    project = f"ccrec_deploy_test_{suffix}"
    schema = f"ccrec_deploy_test_{suffix}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    monkeypatch.setenv("FEAST_PROJECT", project)
    monkeypatch.setenv(
        "FEAST_REGISTRY_URL",
        f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}",
    )
    monkeypatch.setenv("CCREC_REDIS_URL", f"{REDIS_HOST}:{REDIS_PORT},db=0")
    client = redis.Redis(REDIS_HOST, REDIS_PORT)
    try:
        yield project, schema
    finally:
        for key in client.scan_iter(match=b"*" + project.encode()):
            client.delete(key)
        client.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _definitions(source_path: Path):
    """A minimal self-contained entity → source → feature view → push source."""
    from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
    from feast.types import Int64, String

    user = Entity(
        name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A shopper."
    )
    batch = FileSource(
        name="user_stats_batch",
        path=str(source_path),
        timestamp_field="event_timestamp",
    )
    push = PushSource(name="user_stats_push", batch_source=batch)
    view = FeatureView(
        name="user_stats",
        entities=[user],
        ttl=timedelta(days=30),
        schema=[Field(name="last_category", dtype=String), Field(name="clicks", dtype=Int64)],
        source=push,
        online=True,
    )
    return user, batch, push, view


def test_sql_registry_and_redis_online_store(production_env, tmp_path: Path) -> None:
    from feast import FeatureStore
    from feast.data_source import PushMode
    from feast.repo_config import load_repo_config

    project, schema = production_env
    config = load_repo_config(tmp_path, FEAST_YAML)
    assert config.project == project
    assert config.registry.registry_type == "sql"
    assert config.online_store.type == "redis"

    now = datetime.now(UTC).replace(microsecond=0)
    source_path = tmp_path / "user_stats.parquet"
    pd.DataFrame(
        {"user_id": [0], "last_category": ["seed"], "clicks": [0], "event_timestamp": [now]}
    ).to_parquet(source_path)

    store = FeatureStore(config=config)
    user, batch, push, view = _definitions(source_path)
    store.apply([user, batch, push, view])

    # The registry really is in PostgreSQL, inside this test's own schema.
    with psycopg.connect(PG_DSN) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        }
    assert {"feature_views", "entities"} <= tables
    fresh = FeatureStore(config=load_repo_config(tmp_path, FEAST_YAML))
    assert [fv.name for fv in fresh.list_feature_views()] == ["user_stats"]

    store.push(
        "user_stats_push",
        pd.DataFrame(
            {
                "user_id": [42],
                "last_category": ["Comedy"],
                "clicks": [7],
                "event_timestamp": [now],
            }
        ),
        to=PushMode.ONLINE,
    )
    got = fresh.get_online_features(
        features=["user_stats:last_category", "user_stats:clicks"],
        entity_rows=[{"user_id": 42}, {"user_id": 43}],
    ).to_dict()
    assert got["user_id"] == [42, 43]
    assert got["last_category"] == ["Comedy", None]
    assert got["clicks"] == [7, None]

    # The row is in Redis under this project's keys.
    client = redis.Redis(REDIS_HOST, REDIS_PORT)
    assert list(client.scan_iter(match=b"*" + project.encode()))
    store.teardown()
    assert not list(client.scan_iter(match=b"*" + project.encode()))
    client.close()


def test_the_runtime_reads_the_production_environment(production_env, tmp_path) -> None:
    """features.store on the production yaml: the definitions go to the SQL registry, rows to
    Redis with the key TTL, and a second store (another process) reads them back."""
    from feast.data_source import DataSource

    from features import definitions as d
    from features.store import OBJECTS, open_store, push_rows, read_user_features

    project, schema = production_env
    store = open_store(tmp_path, "production")
    assert store.config.project == project
    with psycopg.connect(PG_DSN) as conn:
        registered = {r[0] for r in conn.execute(
            f'SELECT feature_view_name FROM "{schema}".feature_views WHERE project_id = %s',
            (project,))}
    assert registered == {d.user_category_sequence.name, d.user_profile.name,
                          d.category_popularity.name}
    reader = open_store(tmp_path, "production", apply=False)
    assert {o.name for o in reader.list_data_sources()} == {
        o.name for o in OBJECTS if isinstance(o, DataSource)}

    now = datetime.now(UTC).replace(microsecond=0)
    push_rows(store, d.user_profile_push.name, pd.DataFrame({
        d.USER_ID: ["u42"], d.USER_FEATURES: [[3, 1, 4]],
        d.EVENT_TIMESTAMP: [now], d.CREATED: [now],
    }))
    assert read_user_features(reader, ["u42"])["u42"][d.USER_FEATURES] == [3, 1, 4]
    assert read_user_features(reader, ["u43"])["u43"][d.USER_FEATURES] == []

    client = redis.Redis(REDIS_HOST, REDIS_PORT)
    keys = list(client.scan_iter(match=b"*" + project.encode()))
    assert len(keys) == 1  # one user's row
    ttl = client.ttl(keys[0])
    assert 30 * 86_400 - 60 <= ttl <= 30 * 86_400
    client.close()
    store.teardown()
