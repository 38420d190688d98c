"""Fixtures for the serving tests: a synthetic data set, real untrained bundles, a broker,
and one Serve application per module.

Serve's fast request path needs its environment variables before Ray starts,
so they are set here, at collection time, before the session's ``ray_cluster``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from serve.runtime import apply_fast_path, free_port, wait_ready

apply_fast_path()

DEBUG_CONFIG = Path(__file__).parents[2] / "ccrec" / "configs" / "debug.yaml"


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A small prepared data set (6 categories c1..c6, users "0".."63")."""
    from ccrec.data.prepared import load_prepared
    from ccrec.data.synthetic import write_synthetic

    return load_prepared(write_synthetic(tmp_path_factory.mktemp("prepared") / "synthetic"))


def save_untrained_bundle(prepared, root: Path, version: str, seed: int) -> Path:
    """A real ccrec bundle with random weights: the debug config on ``prepared``'s vocabulary."""
    import torch

    from ccrec.bundle import save_bundle
    from ccrec.config import load
    from ccrec.models.cascade import CascadeConfig, CCRec
    from ccrec.models.encoder import CategoryVAE
    from ccrec.models.sampler import MLESampler
    from ccrec.models.scorer import PrecisionScorer

    config = load(CascadeConfig, DEBUG_CONFIG, [])
    num_categories = prepared.num_categories
    torch.manual_seed(seed)
    encoder = CategoryVAE(prepared.feature_cardinalities, num_categories, config.encoder)
    model = CCRec(MLESampler(num_categories, config.max_past, config.sampler), encoder,
                  PrecisionScorer(num_categories, config.encoder.latent_dim, config.scorer),
                  config.candidates)
    return save_bundle(model, config, prepared.vocab, root, dataset="synthetic", version=version)


@pytest.fixture(scope="session")
def bundles(synthetic, tmp_path_factory) -> tuple[Path, Path]:
    """Two untrained bundles of the synthetic vocabulary: versions untrained-1, untrained-2."""
    root = tmp_path_factory.mktemp("bundles")
    return (save_untrained_bundle(synthetic, root, "untrained-1", seed=1),
            save_untrained_bundle(synthetic, root, "untrained-2", seed=2))


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
    """Schemathesis settings: invalid data must get one of the API's 4xx answers (413 for
    a body over the size limit, which the generator reaches with long lists)."""
    from schemathesis.config import SchemathesisConfig

    return SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {
        "expected-statuses": ["400", "405", "413", "422"]}}})


@pytest.fixture(scope="session")
def serve_instance(ray_cluster) -> tuple[int, str]:
    """Serve's controller and HTTP port (a free one), started once per session."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def serve_graph(serve_instance, synthetic):
    """The CCRec application on Serve for one test module (no bundle yet: not ready).

    Module scope: the application (and the CPU its replicas reserve) is gone
    before the Ray Train and Tune tests of the same session need the CPUs.

    Yields ``deploy(**serve_config_kwargs)``, which applies serve_config.yaml with those
    settings the way ``serve deploy`` does (only user_config changes: in place), and
    the proxy URL.
    """
    from ray import serve

    from serve import runtime

    port, url = serve_instance

    def deploy(**kwargs):
        kwargs.setdefault("replicas", 1)
        kwargs.setdefault("features", {"source": "prepared", "path": str(synthetic.path)})
        kwargs.setdefault("bundle", None)
        runtime.deploy(runtime.serve_config(port=port, **kwargs))
        wait_ready(url, path="/healthz")

    deploy()
    yield deploy, url
    serve.delete("ccrec")


@pytest.fixture
def post():
    """``post(url, path, body)``: one JSON POST."""
    def post(url: str, path: str, body) -> httpx.Response:
        return httpx.post(url + path, json=body, timeout=30)

    return post
