"""Training throughput of each stage, the whole ML-1M cascade, one-user inference latency.

Prints JSON::

    {"examples_per_s": {"m1": …, "vae": …, "m2": …},
     "inference_ms_p50": …, "inference_ms_p99": …, "cascade_seconds_ml1m": …}

Usage: ``CCREC_HOME=… python -m benchmarks.train_speed [--dataset ml-1m] [--threads N]
[--set KEY=VALUE …]``. It trains the cascade with the data set's default
config (ccrec/configs/<dataset>.yaml) on ``--threads`` torch threads (default:
every CPU this process may use), saves and reloads it as a bundle, then times
``CascadeRecommender.recommend`` for single users (one thread).
Goals: the cascade on ML-1M in ≤ 600 s on 2 CPU cores; inference p50 ≤ 1 ms, p99 ≤ 2 ms.
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccrec.bundle import Bundle, save_bundle  # noqa: E402
from ccrec.config import load  # noqa: E402
from ccrec.data.prepared import load_prepared  # noqa: E402
from ccrec.models.cascade import CascadeConfig  # noqa: E402
from ccrec.train.cascade import train_cascade  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads for training (default: the CPUs available)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="config override, e.g. --set train_encoder.epochs=1 for a quick run")
    parser.add_argument("--bundle", default=None,
                        help="time inference on this bundle instead of the one just trained")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    prepared = load_prepared(args.dataset)
    config = load(CascadeConfig, ROOT / "ccrec" / "configs" / f"{args.dataset}.yaml",
                  ["train_sampler.progress=false", "train_encoder.progress=false",
                   "train_scorer.progress=false", *args.overrides])
    load_start = os.getloadavg()[0]
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train_cascade(prepared, config)
    cascade_seconds = time.perf_counter() - started
    cascade_cpu_seconds = time.process_time() - cpu_started

    if args.bundle:
        recommender = Bundle.load(args.bundle).recommender()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = save_bundle(result.model, config, prepared.vocab, tmp, dataset=args.dataset)
            recommender = Bundle.load(path).recommender()
    torch.set_num_threads(1)
    users = prepared.split("warm_test")
    requests = [
        (list(r.past_categories), [list(i) for i in r.past_items], list(r.user_features))
        for r in users.itertuples()
    ]
    for cats, items, feats in requests[:50]:  # warm up
        recommender.recommend(cats, items, feats, k=3)
    times, cpu_times = [], []
    for i in range(args.requests):
        cats, items, feats = requests[i % len(requests)]
        t, c = time.perf_counter(), time.thread_time()
        recommender.recommend(cats, items, feats, k=3)
        times.append((time.perf_counter() - t) * 1000)
        cpu_times.append((time.thread_time() - c) * 1000)
    out = {
        "examples_per_s": {name: round(fit.examples_per_s, 1)
                           for name, fit in result.fits.items()},
        "inference_ms_p50": round(float(np.percentile(times, 50)), 3),
        "inference_ms_p99": round(float(np.percentile(times, 99)), 3),
        f"cascade_seconds_{args.dataset.replace('-', '')}": round(cascade_seconds, 1),
        # CPU time of the calling thread: the latency on an idle core
        "inference_cpu_ms_p50": round(float(np.percentile(cpu_times, 50)), 3),
        # CPU seconds of this process for the cascade: its wall time on idle cores
        f"cascade_cpu_seconds_{args.dataset.replace('-', '')}": round(cascade_cpu_seconds, 1),
        "examples": {name: int(sum(h["train_examples"] for h in fit.history) / len(fit.history))
                     for name, fit in result.fits.items()},
        "load_average_1min": round(os.getloadavg()[0], 1),
        "load_average_1min_start": round(load_start, 1),
        "stage_seconds": {k: round(v, 1) for k, v in result.seconds.items()},
        "epochs": {name: len(fit.history) for name, fit in result.fits.items()},
        "threads": args.threads,
        "overrides": args.overrides,
        "bundle": args.bundle,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
