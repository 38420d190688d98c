"""Elastic training and Serve autoscaling on a simulated cluster (Ray nodes on one machine).

``ray.cluster_utils.Cluster`` starts real Ray nodes (a raylet each) on this
machine; nodes are added and removed while work runs on them.

1. **Training.** The M1 stage trains as a Ray Train job with an elastic
   worker range ``(1, 2)`` (``RayConfig(min_workers=1, max_workers=2)``, what
   ``ccrec train --ray --min-workers 1 --max-workers 2`` runs), one CPU per
   worker, on a head node with one CPU: it starts with one worker. After the
   first epoch a second 1-CPU node joins; the run must grow to two workers
   (Ray Train restarts the worker group from the last checkpoint). Halfway
   through an epoch on two workers that node is removed; the run must restart
   on the remaining node from its last checkpoint and finish every epoch.
2. **Serve.** The CCRec application (Ingress → Sampler → Scorer, a bundle
   trained one epoch on the same synthetic users, in-memory features) runs
   with the autoscaling configuration of ``serve/deployments.py`` (its
   replica bounds and targets; the delays and the metric window shortened so
   that a ramp takes a minute, not ten); a client ramps concurrency up and
   then stops. Replicas must be added under load and removed afterwards.

Prints JSON (and writes it with ``--out``)::

    {"train_workers_over_time": [{"t": s, "epoch": e, "workers": n}, …],
     "grew": true, "node_loss_recovered": true, "epochs_lost": 0,
     "serve_replicas": {"min": …, "max": …, "after": …, "per_deployment": {…},
                        "over_time": […]},
     "events": {…}, "machine": {…}}

``train_workers_over_time`` has one row per finished epoch (the worker
group's size then), ``t`` the seconds since the run started when the driver
saw that epoch's checkpoint. ``epochs_lost``: finished epochs trained again
after the node loss (0 = the run resumed at the epoch that was cut off).

Usage: ``python -m benchmarks.elastic [--quick] [--hard-kill] [--out FILE]``
(``--quick``: the small settings the test runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.sim_cluster import end_children, node_args, patient_node_start  # noqa: E402

#: Ray's processes read these when they start. Serve's autoscaling metrics are pushed
#: every half second (the default is 10 s). Right after a node loss, Ray Train's controller
#: still counts the lost node's CPUs and starts a worker group of the old size, which waits
#: for the start timeout (default 60 s) before the group restarts at the size the cluster
#: now has: 15 s is ample for a worker to start here.
CLUSTER_ENV = {"RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
               "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
               "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "15"}
#: What the benchmark changes in serve/deployments.py's autoscaling (bounds and targets kept).
FAST_AUTOSCALING = {"upscale_delay_s": 1.0, "downscale_delay_s": 4.0,
                    "look_back_period_s": 2.0}
SETTINGS = {  # epochs, synthetic users, resize interval (s), ramp [(concurrency, seconds)]
    "full": {"epochs": 40, "users": 2000, "resize_s": 5.0,
             "ramp": [(1, 5), (8, 10), (32, 15), (64, 20)]},
    "quick": {"epochs": 20, "users": 600, "resize_s": 2.0,
              "ramp": [(1, 2), (16, 5), (64, 15)]},
}


class Clock:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return round(time.perf_counter() - self.start, 2)


def latest_history(run_dir: Path) -> list[dict]:
    """The epoch rows of the newest readable checkpoint of a Ray Train run ([] if none)."""
    for state in sorted(run_dir.glob("checkpoint_*/state.json"),
                        key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return json.loads(state.read_text())["history"]
        except (OSError, ValueError, KeyError):
            continue
    return []


class EpochWatch:
    """Records every epoch row the run checkpoints, with the time the driver saw it."""

    def __init__(self, run_dir: Path, clock: Clock) -> None:
        self.run_dir, self.clock = run_dir, clock
        self.rows: list[dict] = []
        self.seen: set[tuple[int, int, int]] = set()

    def poll(self) -> list[dict]:
        for row in latest_history(self.run_dir):
            key = (row["epoch"], row["start_epoch"], row["world_size"])  # one per attempt
            if key not in self.seen:
                self.seen.add(key)
                self.rows.append({"t": self.clock(), "epoch": row["epoch"],
                                  "workers": row["world_size"],
                                  "start_epoch": row["start_epoch"],
                                  "train_seconds": round(row["train_seconds"], 2)})
        return self.rows

    def wait(self, done, thread: threading.Thread, timeout: float) -> dict | None:
        """Poll until ``done(row)`` holds for a new row; None if the run ended or timed out."""
        deadline = time.time() + timeout
        checked = 0
        while time.time() < deadline and thread.is_alive():
            rows = self.poll()
            for row in rows[checked:]:
                if done(row):
                    return row
            checked = len(rows)
            time.sleep(0.2)
        return None


def train_phase(cluster, data: Path, storage: Path, settings: dict, clock: Clock,
                hard_kill: bool = False) -> dict:
    """The elastic M1 run: a node joins after epoch 0 and is removed mid-epoch later
    (``hard_kill``: its processes are killed without notice, so the cluster learns of the
    loss only from failed health checks)."""
    from ccrec.models.base import TrainConfig
    from ccrec.models.cascade import CascadeConfig
    from ccrec.models.sampler import SamplerConfig
    from ccrec.train.distributed import stage_specs
    from ccrec.train.ingest import split_dataset
    from ccrec.train.stage_runner import RayConfig, run_stage

    config = CascadeConfig(
        sampler=SamplerConfig(d_model=32, n_heads=2, n_layers=1, ff_dim=64, hidden=64),
        train_sampler=TrainConfig(epochs=settings["epochs"], batch_size=64, lr=3e-3,
                                  patience=100, progress=False))
    spec = stage_specs(data, config)["m1"]
    # Ray's own control-loop interval (2 s): each epoch's report waits for it, which paces the
    # run's short epochs so that a joining node has time to start before the last one.
    ray_config = RayConfig(min_workers=1, max_workers=2, cpus_per_worker=1.0,
                           resize_interval_s=settings["resize_s"], max_failures=3,
                           storage_path=str(storage), name="elastic", control_interval_s=2.0)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = run_stage(spec, split_dataset(data / "examples.parquet", "train"),
                                          ray_config, run_name="elastic-m1")
        except Exception as exc:  # reported in the JSON; the benchmark itself goes on
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    watch = EpochWatch(storage / "elastic-m1", clock)
    thread = threading.Thread(target=run, daemon=True)
    events: dict[str, Any] = {"started": clock()}
    thread.start()
    budget = 60 + 30 * settings["epochs"]
    first = watch.wait(lambda r: True, thread, budget)
    node = None
    if first is not None:
        node = cluster.add_node(**node_args(num_cpus=1))
        events["node_added"] = {"t": clock(), "after_epoch": first["epoch"]}
        log(f"epoch {first['epoch']} on {first['workers']} worker(s); a second node joined")
    grown = watch.wait(lambda r: r["workers"] == 2, thread, budget) if node else None
    if grown is not None:
        log(f"epoch {grown['epoch']} on 2 workers; removing the node mid-epoch")
        time.sleep(max(0.3, 0.5 * grown["train_seconds"]))
        last_epoch = watch.poll()[-1]["epoch"]
        cluster.remove_node(node, allow_graceful=not hard_kill)
        removed = clock()
        events["node_removed"] = {"t": removed, "last_checkpointed_epoch": last_epoch,
                                  "hard_kill": hard_kill}
        watch.wait(lambda r: r["t"] > removed and r["workers"] == 1, thread, budget)
    thread.join(budget)
    rows = watch.poll()
    events["finished"] = clock()
    result = outcome.get("result")
    history = result.fit.history if result is not None else []
    resumed = [r for r in rows if "node_removed" in events
               and r["t"] > events["node_removed"]["t"] and r["workers"] == 1]
    if resumed:
        events["resumed_at_epoch"] = resumed[0]["start_epoch"]
        events["recovery_seconds"] = round(resumed[0]["t"] - events["node_removed"]["t"], 2)
    return {
        "train_workers_over_time": rows,
        "grew": grown is not None,
        "node_loss_recovered": bool(resumed) and len(history) == settings["epochs"]
        and history[-1]["epoch"] == settings["epochs"] - 1,
        # epochs checkpointed by more than one attempt (each attempt resumes after the last)
        "epochs_lost": len(rows) - len({r["epoch"] for r in rows}),
        "final_world_sizes": [h["world_size"] for h in history],
        "train_error": outcome.get("error"),
        "train_events": events,
    }


def serve_bundle(data: Path, out: Path) -> Path:
    """The debug configuration trained one epoch per stage on ``data``: a real bundle."""
    import torch

    from ccrec.bundle import save_bundle
    from ccrec.config import load
    from ccrec.data.prepared import load_prepared
    from ccrec.models.cascade import CascadeConfig
    from ccrec.train.cascade import train_cascade

    prepared = load_prepared(data)
    config = load(CascadeConfig, ROOT / "ccrec" / "configs" / "debug.yaml",
                  [f"train_{s}.{k}" for s in ("sampler", "encoder", "scorer")
                   for k in ("epochs=1", "progress=false")])
    torch.set_num_threads(1)
    return save_bundle(train_cascade(prepared, config).model, config, prepared.vocab, out,
                       dataset="synthetic")


def replica_counts() -> dict[str, int]:
    """Replicas per deployment that Serve keeps (running or starting; not stopping)."""
    from ray import serve

    app = serve.status().applications.get("ccrec")
    if app is None:
        return {}
    return {name: sum(n for state, n in d.replica_states.items() if state != "STOPPING")
            for name, d in app.deployments.items()}


async def ramp(url: str, steps: list[tuple[int, float]], users: list[str],
               headers: dict[str, str]) -> list[dict]:
    """``concurrency`` clients POST recommendations for ``seconds`` per step."""
    import random

    import httpx

    rng = random.Random(0)
    rows = []
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        for concurrency, seconds in steps:
            stop = time.perf_counter() + seconds
            counts = {"ok": 0, "failed": 0}

            async def client_loop(stop: float, counts: dict[str, int]) -> None:
                while time.perf_counter() < stop:
                    r = await client.post("/v1/recommendations",
                                          json={"user_id": rng.choice(users), "k": 3})
                    counts["ok" if r.status_code == 200 else "failed"] += 1

            await asyncio.gather(*(client_loop(stop, counts) for _ in range(concurrency)))
            rows.append({"concurrency": concurrency, "seconds": seconds, **counts})
            log(f"load step c={concurrency}: {counts} replicas {replica_counts()}")
    return rows


def serve_phase(cluster, data: Path, tmp: Path, settings: dict, clock: Clock) -> dict:
    """The CCRec Serve application under a load ramp, then idle until it scales down."""
    from ray import serve

    from benchmarks.serve import api_key
    from ccrec.data.prepared import load_prepared
    from serve import runtime
    from serve.auth import KEYS_FILE_ENV
    from serve.deployments import INGRESS_AUTOSCALING, STAGE_AUTOSCALING

    cluster.add_node(**node_args(num_cpus=4))  # room for the ramp's replicas (0.3 CPU each)
    bundle = serve_bundle(data, tmp / "bundles")
    prepared = load_prepared(data)
    users = [prepared.vocab["users"][u] for u in prepared.examples["user"].unique()]
    headers = api_key(tmp)
    port = runtime.free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    config = runtime.serve_config(bundle=str(bundle), port=port,
                                  features={"source": "prepared", "path": str(data)},
                                  env={KEYS_FILE_ENV: os.environ[KEYS_FILE_ENV]})
    autoscaling = {}
    for deployment in config["applications"][0]["deployments"]:
        base = INGRESS_AUTOSCALING if deployment["name"] == "Ingress" else STAGE_AUTOSCALING
        deployment["autoscaling_config"] = {**base, **FAST_AUTOSCALING}
        autoscaling[deployment["name"]] = deployment["autoscaling_config"]
    runtime.deploy(config)
    url = f"http://127.0.0.1:{port}"
    runtime.wait_ready(url)

    timeline: list[dict] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            counts = replica_counts()
            if counts and (not timeline or {k: timeline[-1][k] for k in counts} != counts):
                timeline.append({"t": clock(), **counts})
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rest = replica_counts()
    load = asyncio.run(ramp(url, settings["ramp"], users, headers))
    ramp_end = clock()
    deadline = time.time() + 120
    while time.time() < deadline and sum(replica_counts().values()) > sum(rest.values()):
        time.sleep(1)
    after = replica_counts()
    stop.set()
    watcher.join(5)
    serve.shutdown()
    totals = [sum(v for k, v in row.items() if k != "t") for row in timeline]
    names = sorted(rest)
    return {
        "min": min(totals), "max": max(totals), "at_rest": sum(rest.values()),
        "after": sum(after.values()),
        "scaled_up": max(totals) > sum(rest.values()),
        "scaled_down": sum(after.values()) == sum(rest.values()),
        "per_deployment": {n: {"at_rest": rest[n], "max": max(r[n] for r in timeline),
                               "after": after.get(n)} for n in names},
        "ramp": load, "ramp_ended_at": ramp_end, "over_time": timeline,
        "autoscaling_config": autoscaling,
    }


def quiet_ray_data() -> None:
    """Ray Data's progress lines stay in Ray's log files, off this console."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def log(message: str) -> None:
    print(f"[elastic] {message}", file=sys.stderr, flush=True)


def main() -> None:
    stdout = os.fdopen(os.dup(1), "w")  # Ray's processes write to fd 1; the JSON keeps stdout
    os.dup2(2, 1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (the test's)")
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--hard-kill", action="store_true",
                        help="kill the removed node's processes without notice")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = SETTINGS["quick" if args.quick else "full"]
    os.environ.update(CLUSTER_ENV)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

    import ray
    from ray.cluster_utils import Cluster

    from ccrec.data.synthetic import Favourites, write_synthetic

    tmp = Path(tempfile.mkdtemp(prefix="ccrec-elastic-"))
    data = write_synthetic(tmp / "synthetic", pattern=Favourites(),
                           num_users=settings["users"], num_categories=12, num_items=120,
                           min_past=3, max_past=10, feature_cardinalities=(7, 4))
    load_start = os.getloadavg()[0]
    clock = Clock()
    os.environ.setdefault("CCREC_HOME", str(tmp / "home"))  # the nodes' processes inherit it
    patient_node_start()
    cluster = Cluster()
    result: dict[str, Any] = {}
    try:
        cluster.add_node(**node_args(num_cpus=1, include_dashboard=False))  # the head
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        log(f"cluster up in {clock()} s (head node: 1 CPU)")
        quiet_ray_data()
        result.update(train_phase(cluster, data, tmp / "ray_results", settings, clock,
                                  hard_kill=args.hard_kill))
        log(f"training: grew={result['grew']} recovered={result['node_loss_recovered']} "
            f"workers per epoch {result['final_world_sizes']}")
        if not args.skip_serve:
            result["serve_replicas"] = serve_phase(cluster, data, tmp, settings, clock)
            log(f"serve replicas: {result['serve_replicas']['per_deployment']}")
    finally:
        ray.shutdown()
        cluster.shutdown()
        end_children()
    result["settings"] = {"mode": "quick" if args.quick else "full",
                          **{k: v for k, v in settings.items() if k != "ramp"},
                          "ramp": [list(s) for s in settings["ramp"]]}
    result["machine"] = {"cpus": os.cpu_count(), "load_avg_1m_start": round(load_start, 1),
                         "load_avg_1m_end": round(os.getloadavg()[0], 1),
                         "seconds": clock(),
                         "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    text = json.dumps(result, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text, file=stdout, flush=True)


if __name__ == "__main__":
    main()
