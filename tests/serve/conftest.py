"""Fixtures for the serving tests: bundles, the single-process app, one Serve graph.

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


class MemoryPublisher:
    """Accepts events in memory (the HTTP contract without a broker)."""

    bootstrap_servers = "memory"

    def __init__(self) -> None:
        self.events = []

    async def publish(self, event):
        self.events.append(event)
        return {"event_id": event.dedup_id, "topic": "memory", "partition": 0,
                "offset": len(self.events) - 1}

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def toy_bundles(tmp_path_factory) -> tuple[Path, Path]:
    from serve.model import write_toy_bundle

    root = tmp_path_factory.mktemp("bundles")
    return (write_toy_bundle(root / "v1", version="toy-1", seed=1),
            write_toy_bundle(root / "v2", version="toy-2", seed=2))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A synthetic prepared data set and a cascade bundle trained on it (debug config)."""
    import torch

    from ccrec.bundle import save_bundle
    from ccrec.config import load
    from ccrec.data.prepared import load_prepared
    from ccrec.data.synthetic import write_synthetic
    from ccrec.train.cascade import CascadeConfig, train_cascade

    root = tmp_path_factory.mktemp("trained")
    prepared_path = write_synthetic(root / "synthetic")
    prepared = load_prepared(prepared_path)
    config = load(CascadeConfig, DEBUG_CONFIG, [])
    torch.set_num_threads(1)
    result = train_cascade(prepared, config)
    bundle = save_bundle(result.model, config, prepared.vocab, root / "bundles",
                         dataset="synthetic")
    return prepared_path, prepared, bundle


@pytest.fixture(scope="session")
def serve_instance(ray_cluster) -> tuple[int, str]:
    """Serve's controller and HTTP port, started once per session."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def serve_graph(serve_instance):
    """The CCRec graph on Serve for one test module (no bundle yet: not ready).

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
        kwargs.setdefault("features", {"source": "synthetic", "users": 50})
        kwargs.setdefault("bundle", None)
        runtime.deploy(runtime.serve_config(port=port, **kwargs))
        wait_ready(url, path="/healthz")

    deploy()
    yield deploy, url
    serve.delete("ccrec")


def post(url: str, path: str, body) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30)
