"""Elastic training and Serve autoscaling on a simulated cluster: ``python -m
benchmarks.elastic --quick``, in its own process because it starts its own multi-node
Ray cluster (``ray.cluster_utils.Cluster``: a head, and nodes added and removed on this
machine), which the session's shared Ray instance cannot be.

The run: M1 with an elastic range (1, 2) starts on the 1-CPU head; a second node
joins after the first epoch and the worker group must grow to 2; that node is removed
in the middle of an epoch and the run must resume on the head from its last
checkpoint and finish every epoch; then the Serve application must add replicas
under a load ramp and remove them when the load stops. It takes minutes on a shared
2-core machine (three worker-group starts and a Serve application).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_training_grows_survives_node_loss_and_serve_scales(tmp_path):
    out = tmp_path / "elastic.json"
    run = subprocess.run([sys.executable, "-m", "benchmarks.elastic", "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=840, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["train_error"] is None
    sizes = [row["workers"] for row in result["train_workers_over_time"]]
    assert sizes[0] == 1 and 2 in sizes  # started on the head alone, then grew
    assert sizes[-1] == 1  # after the node loss: the head alone
    assert result["grew"] and result["node_loss_recovered"]
    epochs = result["settings"]["epochs"]
    assert result["final_world_sizes"][-1] == 1 and len(result["final_world_sizes"]) == epochs
    replicas = result["serve_replicas"]
    assert replicas["at_rest"] == 3  # Ingress, Sampler, Scorer: min_replicas 1 each
    assert replicas["max"] > replicas["at_rest"]  # the ramp added replicas
    assert replicas["after"] == replicas["at_rest"]  # and they went away afterwards
