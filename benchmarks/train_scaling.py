"""Ray Train scaling of the cascade: examples/s per stage with 1 and 2 workers, and
Ray Train's time per epoch against the single-process trainer on the same data.

Prints JSON::

    {"examples_per_s": {"1": {"m1": …, "vae": …, "m2": …}, "2": {…}},
     "epoch_seconds": {"single": {…}, "1": {…}, "2": {…}},
     "ray_vs_single_ratio": …,          # Σ epoch time, Ray 1 worker / single process
     "stage_wall_seconds": {"single": {…}, "1": {…}, "2": {…}},
     "machine": {...}}

Examples/s and epoch seconds count only the training passes (``train_epoch``);
``stage_wall_seconds`` adds each stage's start-up (worker processes, Ray Data
ingest, checkpoints), which dominates on tiny data. The single-process run
uses one torch thread, like a Ray worker with ``num_cpus=1``.
Goal: ``ray_vs_single_ratio`` ≤ 1.3.

Usage: ``CCREC_HOME=… python -m benchmarks.train_scaling [--dataset ml-1m]
[--epochs 2] [--set KEY=VALUE …]`` (default config: ccrec/configs/debug.yaml
widened to the data set; the data set is prepared when needed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccrec.config import load  # noqa: E402
from ccrec.data.prepared import load_prepared  # noqa: E402
from ccrec.models.cascade import CascadeConfig  # noqa: E402
from ccrec.train.cascade import train_cascade  # noqa: E402
from ccrec.train.distributed import train_cascade_ray  # noqa: E402
from ccrec.train.run import ensure_prepared  # noqa: E402
from ccrec.train.stage_runner import RayConfig  # noqa: E402

STAGES = ("m1", "vae", "m2")


def _single(path: Path, config: CascadeConfig) -> tuple[dict, dict, dict]:
    torch.set_num_threads(1)
    result = train_cascade(load_prepared(path), config)
    epoch = {s: f.epoch_seconds for s, f in result.fits.items()}
    rate = {s: f.examples_per_s for s, f in result.fits.items()}
    wall = {s: result.seconds[s] for s in STAGES}
    return epoch, rate, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray

    path = ensure_prepared(args.dataset)
    overrides = [f"train_{s}.{k}" for s in ("sampler", "encoder", "scorer")
                 for k in (f"epochs={args.epochs}", "patience=100", "progress=false")]
    config = load(CascadeConfig, ROOT / "ccrec" / "configs" / "debug.yaml",
                  [*overrides, "max_past=10", *args.overrides])

    epoch, rate, wall = {}, {}, {}
    epoch["single"], rate["single"], wall["single"] = _single(path, config)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as storage:
        for workers in (1, 2):
            result = train_cascade_ray(path, config, RayConfig(
                num_workers=workers, storage_path=storage, name=f"scaling-{workers}"))
            key = str(workers)
            epoch[key] = {s: f.epoch_seconds for s, f in result.fits.items()}
            rate[key] = {s: f.examples_per_s for s, f in result.fits.items()}
            wall[key] = {s: result.seconds[s] for s in STAGES}
            print(f"{workers} worker(s): {rate[key]}", file=sys.stderr)
    ray.shutdown()

    ratio = sum(epoch["1"].values()) / sum(epoch["single"].values())
    r2 = lambda d: {k: {s: round(v, 3) for s, v in row.items()} for k, row in d.items()}  # noqa: E731
    print(json.dumps({
        "examples_per_s": {k: v for k, v in r2(rate).items() if k != "single"},
        "examples_per_s_single": r2(rate)["single"],
        "epoch_seconds": r2(epoch),
        "ray_vs_single_ratio": round(ratio, 3),
        "stage_wall_seconds": r2(wall),
        "dataset": path.name,
        "epochs": args.epochs,
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 1),
                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }, indent=2))


if __name__ == "__main__":
    main()
