"""Real Ray nodes on one machine that may be loaded: patient start-up, fixed agent ports,
and stopping what a failed start left behind (``ray.cluster_utils.Cluster`` helpers)."""

from __future__ import annotations

import os
import time


def patient_node_start(seconds: float = 240.0) -> None:
    """Give a starting node up to ``seconds`` to register instead of Ray's fixed 30 s.

    On a loaded machine a new raylet can take longer than that, and a node whose
    start-up timed out leaves its processes running. Ray waits in a loop around
    ``services.get_node``; this makes that call keep trying until the node answers.
    """
    from ray._private import services

    # the raylet's wait for its agents (their port files), inherited by every node
    os.environ.setdefault("RAY_agent_register_timeout_ms", str(int(seconds * 1000)))
    original = services.get_node

    def get_node(gcs_address, node_id):
        deadline = time.time() + seconds
        while True:
            try:
                return original(gcs_address, node_id)
            except RuntimeError:
                if time.time() > deadline:
                    raise
                time.sleep(1)

    services.get_node = get_node


def node_args(**resources) -> dict:
    """Arguments of ``Cluster.add_node``: ``resources`` and fixed ports for the node's
    agents (with port 0 the raylet waits a fixed time for each agent to write its port
    to a file, and a loaded machine misses that window)."""
    import socket

    sockets = [socket.socket() for _ in range(4)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    names = ("metrics_agent_port", "dashboard_agent_listen_port", "runtime_env_agent_port",
             "metrics_export_port")
    return {**dict(zip(names, ports, strict=True)), **resources}


def end_children() -> None:
    """Stop what this process started and left running (a node that failed to start
    is not the cluster's to shut down)."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        child.terminate()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        child.kill()
