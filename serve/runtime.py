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
