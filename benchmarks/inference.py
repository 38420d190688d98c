"""One-user inference, eager vs traced (+ the VAE embedding cache), side by side in one run.

Prints JSON: for each way of answering, the p50/p99 latency (wall and CPU
time of the calling thread, ms) of ``CascadeRecommender.recommend`` (the one
call) and of ``sample`` + ``score`` (the two serving stages), and whether
every answer was identical to the eager model's:

* ``eager``: the model's modules (``recommender(fast=False)``);
* ``fast_uncached``: traced stages, the user's CIs not held (each request
  embeds them: a user's first request, or one after a click);
* ``fast_cached``: traced stages, the CIs held (a returning user).

The three run in turn on the same user, request after request, so load from
other processes on a shared machine falls on all three alike; compare the
ratios. One torch thread.

    .venv/bin/python -m benchmarks.inference [--requests 2000] [--bundle DIR --prepared DIR]

By default the bundle is the ML-1M configuration (full model size) trained
one epoch per stage on 1,000 synthetic users (as ``benchmarks/serve.py``),
and the users are that data set's warm test users.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serve import synthetic_bundle  # noqa: E402
from ccrec.bundle import Bundle, CascadeRecommender, UserRequest  # noqa: E402
from ccrec.data.prepared import load_prepared  # noqa: E402

WAYS = ("eager", "fast_uncached", "fast_cached")


def _summary(wall: list[float], cpu: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(wall, 50)), 3),
            "p99_ms": round(float(np.percentile(wall, 99)), 3),
            "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
            "cpu_p99_ms": round(float(np.percentile(cpu, 99)), 3)}


def _one_call(rec: CascadeRecommender, user: UserRequest) -> list:
    return rec.recommend(user.past_categories, user.past_items, user.user_features, k=3)


def _two_stages(rec: CascadeRecommender, user: UserRequest) -> list:
    return rec.score([user], rec.sample([user], [3]), [3])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per way and path")
    parser.add_argument("--bundle", default=None)
    parser.add_argument("--prepared", default=None, help="its users (with --bundle)")
    args = parser.parse_args()
    if args.bundle and not args.prepared:
        parser.error("--bundle needs --prepared")
    torch.set_num_threads(1)
    if args.bundle:
        prepared_path, bundle_path = Path(args.prepared), Path(args.bundle)
    else:
        prepared_path, bundle_path = synthetic_bundle(Path(tempfile.mkdtemp(prefix="ccrec-inf-")))
    prepared = load_prepared(prepared_path)
    users = [UserRequest(list(r.past_categories), [list(i) for i in r.past_items],
                         list(r.user_features)) for r in prepared.split("warm_test").itertuples()]
    bundle = Bundle.load(bundle_path)
    eager, fast = bundle.recommender(fast=False), bundle.recommender()
    recs = {"eager": eager, "fast_uncached": fast, "fast_cached": fast}
    load_before = os.getloadavg()[0]
    out: dict = {"bundle": "ml-1m config, 1 epoch on 1,000 synthetic users" if not args.bundle
                 else str(bundle_path), "users": len(users), "requests": args.requests,
                 "traced": list(fast.stages.traced), "threads": 1}
    for path, call in (("recommend", _one_call), ("sample_score", _two_stages)):
        for user in users[:30]:  # warm up
            for rec in (eager, fast):
                call(rec, user)
        wall: dict[str, list[float]] = {w: [] for w in WAYS}
        cpu: dict[str, list[float]] = {w: [] for w in WAYS}
        identical = True
        for n in range(args.requests):
            user = users[n % len(users)]
            answers = {}
            for way in WAYS:
                if way == "fast_uncached" and fast.embeddings is not None:
                    fast.embeddings.rows.clear()
                t, c = time.perf_counter(), time.thread_time()
                answers[way] = call(recs[way], user)
                wall[way].append((time.perf_counter() - t) * 1e3)
                cpu[way].append((time.thread_time() - c) * 1e3)
            identical &= answers["fast_uncached"] == answers["eager"] == answers["fast_cached"]
        row = {way: _summary(wall[way], cpu[way]) for way in WAYS}
        for way in WAYS[1:]:
            row[f"{way}_over_eager_p50"] = round(
                row[way]["p50_ms"] / row["eager"]["p50_ms"], 3)
            row[f"{way}_over_eager_cpu_p50"] = round(
                row[way]["cpu_p50_ms"] / row["eager"]["cpu_p50_ms"], 3)
        row["identical_answers"] = identical
        out[path] = row
        print(f"{path}: {row}", file=sys.stderr)
    out["load_average_1min"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    out["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
