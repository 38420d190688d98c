"""The cascade on CUDA: one epoch of each stage through Ray Train with one GPU per worker.

This is the path of ``ccrec train --ray --gpu``: Ray Train workers with
``use_gpu=True`` (``prepare_model`` puts each stage on its GPU, batches follow
the model), M1's candidates and the VAE's μ by GPU inference actors, and
checkpoints written from CPU copies. Prints JSON::

    {"device": "NVIDIA …", "examples_per_s": {"m1": …, "vae": …, "m2": …},
     "epoch_seconds": {…}, "stage_wall_seconds": {…}, "dataset": …, "workers": 1}

Usage: ``python -m benchmarks.gpu_check [--dataset ml-1m | --synthetic 20000]
[--workers 1]`` (``--synthetic N``: N synthetic users, for a machine without the
data set). Without a CUDA device it says so and exits with status 2; nothing
is written to stdout then.
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

NO_CUDA = 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--synthetic", type=int, default=0,
                        help="train on this many synthetic users instead of --dataset")
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers (1 GPU each)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: not run: torch sees no CUDA device on this machine "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}).", file=sys.stderr)
        return NO_CUDA
    logging.basicConfig(level=logging.WARNING)
    stdout = os.fdopen(os.dup(1), "w")  # Ray's processes write to fd 1; the JSON keeps stdout
    os.dup2(2, 1)

    import ray

    from ccrec.config import load
    from ccrec.models.cascade import CascadeConfig
    from ccrec.train.distributed import train_cascade_ray
    from ccrec.train.stage_runner import RayConfig

    tmp = Path(tempfile.mkdtemp(prefix="ccrec-gpu-"))
    if args.synthetic:
        from ccrec.data.synthetic import write_synthetic

        path = write_synthetic(tmp / "synthetic", num_users=args.synthetic, num_categories=18,
                               num_items=3000, max_past=10, feature_cardinalities=(3, 8, 22))
        config_name = "ml-1m"
    else:
        from ccrec.train.run import ensure_prepared

        path, config_name = ensure_prepared(args.dataset), args.dataset
    one_epoch = [f"train_{s}.{k}" for s in ("sampler", "encoder", "scorer")
                 for k in ("epochs=1", "progress=false")]
    config = load(CascadeConfig, ROOT / "ccrec" / "configs" / f"{config_name}.yaml", one_epoch)
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    started = time.perf_counter()
    result = train_cascade_ray(path, config, RayConfig(
        num_workers=args.workers, use_gpu=True, storage_path=str(tmp / "ray_results"),
        name="gpu-check"))
    wall = time.perf_counter() - started
    ray.shutdown()
    r3 = lambda d: {k: round(v, 3) for k, v in d.items()}  # noqa: E731
    print(json.dumps({
        "device": torch.cuda.get_device_name(0),
        "examples_per_s": r3({s: f.examples_per_s for s, f in result.fits.items()}),
        "epoch_seconds": r3({s: f.epoch_seconds for s, f in result.fits.items()}),
        "stage_wall_seconds": r3(result.seconds),
        "cascade_wall_seconds": round(wall, 1),
        "world_sizes": {s: [h["world_size"] for h in f.history]
                        for s, f in result.fits.items()},
        "dataset": path.name, "workers": args.workers,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }, indent=2), file=stdout, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
