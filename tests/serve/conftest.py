"""Fixtures for the serving tests: a synthetic data set, real untrained bundles, a broker,
and one Serve application per module.

Serve's fast request path needs its environment variables before Ray starts,
so they are set here, at collection time, before the session's ``ray_cluster``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from untrained import save_untrained_bundle

from serve.runtime import apply_fast_path, free_port, wait_ready

apply_fast_path()


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A small prepared data set (6 categories c1..c6, users "0".."63")."""
    from ccrec.data.prepared import load_prepared
    from ccrec.data.synthetic import write_synthetic

    return load_prepared(write_synthetic(tmp_path_factory.mktemp("prepared") / "synthetic"))


@pytest.fixture(scope="session")
def bundles(synthetic, tmp_path_factory) -> tuple[Path, Path]:
    """Two untrained bundles of the synthetic vocabulary: versions untrained-1, untrained-2."""
    root = tmp_path_factory.mktemp("bundles")
    return (save_untrained_bundle(synthetic, root, "untrained-1", seed=1),
            save_untrained_bundle(synthetic, root, "untrained-2", seed=2))


@pytest.fixture(scope="session")
def wide_bundle(tmp_path_factory) -> Path:
    """An untrained bundle with more categories (9, c1..c9) than ``bundles`` (6) and the
    same user features: version untrained-wide."""
    from ccrec.data.prepared import load_prepared
    from ccrec.data.synthetic import write_synthetic

    prepared = load_prepared(write_synthetic(
        tmp_path_factory.mktemp("prepared") / "wide", num_categories=9, num_items=45))
    return save_untrained_bundle(prepared, tmp_path_factory.mktemp("bundles"), "untrained-wide",
                                 seed=3)


@dataclass(frozen=True)
class ApiKey:
    """A key with every scope, one with recommendations:read only, and the keys file that
    holds their hashes."""

    key: str
    limited: str
    file: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    @property
    def env(self) -> dict[str, str]:
        """What a serving process needs to check it."""
        return {"CCREC_API_KEYS_FILE": str(self.file)}


@pytest.fixture(scope="session")
def api_key(tmp_path_factory) -> ApiKey:
    from serve.auth import Scope, append_key, new_key

    key, record = new_key("tests", list(Scope))
    limited, limited_record = new_key("reader", [Scope.RECOMMENDATIONS_READ])
    path = tmp_path_factory.mktemp("keys") / "keys.yaml"
    append_key(path, record)
    append_key(path, limited_record)
    return ApiKey(key, limited, path)


@pytest.fixture(scope="session")
def broker():
    """The embedded Kafka-protocol broker (Tansu) with the events topics."""
    from streaming.broker import EmbeddedBroker, KafkaSettings
    from streaming.events import ensure_topics

    with EmbeddedBroker() as running:
        ensure_topics(KafkaSettings.from_env(running.bootstrap_servers))
        yield running.bootstrap_servers


@pytest.fixture(scope="session")
def fuzz_config():
    """``fuzz_config(key)``: Schemathesis settings that call with ``key`` (and check that
    the API refuses the same calls without it); invalid data must get one of the API's
    4xx answers (401 for a request without the key, 413 for a body over the size limit,
    which the generator reaches with long lists)."""
    from schemathesis.config import SchemathesisConfig

    def config(key: str) -> SchemathesisConfig:
        return SchemathesisConfig.from_dict({
            "auth": {"openapi": {"bearerAuth": {"bearer": key}}},
            "checks": {"negative_data_rejection": {
                "expected-statuses": ["400", "401", "405", "413", "422"]}}})

    return config


@pytest.fixture(scope="session")
def serve_instance(ray_cluster) -> tuple[int, str]:
    """Serve's controller and HTTP port (a free one), started once per session.

    Serve gives its HTTP proxy a fixed 60 s to start and kills it otherwise; on a
    loaded machine (other Ray clusters starting beside this one) the proxy's worker
    process can miss that. Serve is then started again, at most twice.
    """
    import ray
    from ray import serve

    for attempt in range(3):
        port = free_port()
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            break
        except (ray.exceptions.ActorDiedError, ray.exceptions.GetTimeoutError):
            if attempt == 2:
                raise
            serve.shutdown()
    return port, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def serve_graph(serve_instance, synthetic, api_key):
    """The CCRec application on Serve for one test module (no bundle yet: not ready).

    Module scope: the application (and the CPU its replicas reserve) is gone
    before the Ray Train and Tune tests of the same session need the CPUs.

    Yields ``deploy(**serve_config_kwargs)``, which applies serve_config.yaml with those
    settings the way ``serve deploy`` does (only user_config changes: in place;
    ``deploy.config()`` is the config deployed last), and the proxy URL.
    """
    from ray import serve

    from serve import runtime

    port, url = serve_instance

    def deploy(**kwargs):
        kwargs.setdefault("replicas", 1)
        kwargs.setdefault("features", {"source": "prepared", "path": str(synthetic.path)})
        kwargs.setdefault("bundle", None)
        kwargs.setdefault("env", api_key.env)
        deploy.last = runtime.serve_config(port=port, **kwargs)
        runtime.deploy(deploy.last)
        wait_ready(url, path="/healthz")

    deploy.config = lambda: deploy.last  # the config deployed last

    deploy()
    yield deploy, url
    serve.delete("ccrec")


@pytest.fixture
def post(api_key):
    """``post(url, path, body)``: one JSON POST with the API key."""
    def post(url: str, path: str, body) -> httpx.Response:
        return httpx.post(url + path, json=body, timeout=30, headers=api_key.headers)

    return post
