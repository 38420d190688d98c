"""Starting Ray + Serve for CCRec on one machine: the fast request path, ports, shutdown.

Serve's faster request path is switched on by environment variables that
every Ray process must see, so they are set *before* Ray starts
(:func:`fast_path_env`):

* ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` — direct ingress (the Ingress replica
  serves HTTP itself, no proxy hop), gRPC between replicas, user code and the
  router on the replica's own event loop, buffered request logs;
* ``RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT`` — the first Ingress replica's
  HTTP port (the next replicas take the following ports); the Serve proxy
  still listens on the ``http_options`` port and routes to every replica.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_path_env(direct_port: int) -> dict[str, str]:
    """Environment for Serve's fast request path with the Ingress on ``direct_port``."""
    return {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(direct_port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(direct_port + 50),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        "OMP_NUM_THREADS": "1",
    }


def apply_fast_path(direct_port: int | None = None) -> int:
    """Set the fast-path variables in this process (call before ``ray.init``); the port."""
    port = direct_port or int(os.environ.get("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", 0)) \
        or free_port()
    for key, value in fast_path_env(port).items():
        os.environ.setdefault(key, value)
    return int(os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"])


def wait_ready(url: str, timeout: float = 180.0, path: str = "/readyz") -> None:
    """Poll ``url + path`` until it answers 200."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            r = httpx.get(url + path, timeout=5)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise TimeoutError(f"{url}{path} not ready after {timeout:.0f}s: {last}")


CONFIG_PATH = Path(__file__).with_name("serve_config.yaml")


def serve_config(bundle: str | None = None, features: dict | None = None,
                 kafka: str | None = None, replicas: int | None = None,
                 port: int | None = None, batch: dict | None = None) -> dict:
    """``serve_config.yaml`` with the bundle, feature source, broker and port filled in.

    Args:
        bundle: the model bundle directory (Sampler and Scorer user_config).
        features: the Ingress's feature source (:func:`serve.features.reader_from_config`).
        kafka: bootstrap servers for POST /v1/events.
        replicas: a fixed replica count for every deployment instead of autoscaling.
        port: the proxy's HTTP port.
        batch: ``max_batch_size`` / ``batch_wait_timeout_s`` of both stages.
    """
    import copy

    import yaml

    config = copy.deepcopy(yaml.safe_load(CONFIG_PATH.read_text()))
    if port is not None:
        config["http_options"]["port"] = port
    for deployment in config["applications"][0]["deployments"]:
        user = deployment.setdefault("user_config", {})
        if deployment["name"] == "Ingress":
            if features is not None:
                user["features"] = features
            if kafka is not None:
                user["kafka"] = kafka
        else:
            if bundle is not None:
                user["bundle"] = str(bundle)
            user.update(batch or {})
        if replicas:
            deployment.update(num_replicas=replicas, autoscaling_config=None)
    return config


def deploy(config: dict, timeout: float = 300.0) -> None:
    """Apply a Serve config to the running Serve instance (what ``serve deploy`` does).

    Deploying the same import path again with only ``user_config`` changed
    reconfigures the live replicas in place — the hot-reload path.
    """
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
    names = [app["name"] for app in config["applications"]]
    deadline = time.time() + timeout
    while time.time() < deadline:
        apps = serve.status().applications
        states = [apps[n].status if n in apps else None for n in names]
        if all(s == "RUNNING" for s in states):
            return
        if any(s == "DEPLOY_FAILED" for s in states):
            raise RuntimeError(f"Serve deploy failed: {apps}")
        time.sleep(0.5)
    raise TimeoutError(f"Serve applications {names} not running after {timeout:.0f}s")
