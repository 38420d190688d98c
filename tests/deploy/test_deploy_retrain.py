"""The retraining RayJob: one `ccrec retrain` cycle on the store the stream worker writes,
publishing to the bundles root whose `current` link the RayService serves."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from streaming.continual import retrain

K8S = Path(__file__).parents[2] / "deploy" / "k8s"


def _worker_args() -> list[str]:
    for doc in yaml.safe_load_all((K8S / "41-stream-worker.yaml").read_text()):
        if doc and doc["kind"] == "Deployment":
            return doc["spec"]["template"]["spec"]["containers"][0]["command"]
    raise AssertionError("41-stream-worker.yaml has no Deployment")


def test_the_retrain_job_runs_one_cycle_on_the_workers_store_for_the_served_bundles():
    job = yaml.safe_load((K8S / "jobs" / "rayjob-retrain.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["clusterSelector"] == {
        "ray.io/cluster": "ccrec-train"}
    args = shlex.split(job["spec"]["entrypoint"])
    assert args[:2] == ["ccrec", "retrain"]
    params = retrain.make_context("retrain", args[2:]).params  # every option exists
    assert params["every"] is None  # one cycle per job
    assert params["use_ray"] and params["address"] == "auto"
    worker = _worker_args()
    assert str(params["root"]) == worker[worker.index("--root") + 1]
    assert params["feast_env"] == worker[worker.index("--feast-env") + 1]
    # the stream worker and both serving stages read <bundles>/current
    current = str(params["bundles_root"] / "current")
    assert worker[worker.index("--dataset") + 1] == current
    served = re.findall(r"bundle: (\S+)", (K8S / "70-rayservice.yaml").read_text())
    assert len(served) == 2 and set(served) == {current}
