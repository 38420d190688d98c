"""Continual-training benchmark: a frozen model against one retrained after every period.

ML-1M is replayed in time order, one calendar month (a *period*) at a time,
through the real loop: the embedded broker (Tansu) → the stream worker → the
Feast store and its offline log. The first ``--warmup`` months train the first
model (``ccrec retrain``'s first cycle) and publish it. Then, for every later
period p:

1. the period's clicks are scored twice: (a) by the first model, *frozen*;
   (b) by the model serving now, *continual* (retrained after every earlier
   period). A scored point is a moment just before a new category interaction
   (CI) of a user in the period (at most ``--points`` per user); the truth is
   that CI's categories (``cis:1``); the features are every earlier event;
2. the period's events go through the broker and the worker;
3. one retraining cycle runs (:func:`streaming.continual.retrain_cycle`:
   warm start, new examples + replay sample, gate, publish).

A month with fewer than ``--min-events`` events joins the next one. Output
(``benchmarks/results/continual.json``): HR@1 per period of both models with
n, ``mean_gain_HR@1`` (the mean over periods of continual − frozen) with a 95 %
bootstrap interval (users resampled within each period, independently per
period), the cycle's wall time (``retrain_seconds``) and ``staleness_s``: from
the moment the worker has applied a period's last event to the moment the
model trained on it is published (or rejected). The load average is recorded
with the times.

Usage: ``python -m benchmarks.continual [--users 600] [--warmup 2] [--periods 8]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ccrec.bootstrap import resample_weights, resampled_metrics
from ccrec.bundle import Bundle
from ccrec.data.examples import examples_at
from ccrec.data.horizon import Horizon, category_interactions
from ccrec.data.origins import boundaries
from ccrec.data.prepared import load_prepared
from ccrec.data.sequences import SequenceSpec
from ccrec.data.tables import UserTable
from ccrec.evaluate import evaluate_sums
from ccrec.registry import Registry
from features.store import load_static_features
from streaming.continual import RetrainConfig, retrain_cycle
from streaming.local import LocalLoop

log = logging.getLogger("benchmarks.continual")
RESULTS = Path(__file__).parent / "results" / "continual.json"
DRAWS = 1000


def _periods(events: pd.DataFrame, warmup: int, min_events: int) -> list[tuple[int, int]]:
    """[start, end) epoch-second bounds: the warm-up months, then months of at least
    ``min_events`` events (a smaller month joins the next)."""
    month = pd.to_datetime(events["timestamp"], unit="s").dt.to_period("M")
    starts = [int(pd.Period(m, "M").start_time.timestamp()) for m in sorted(month.unique())]
    ends = starts[1:] + [int(events["timestamp"].max()) + 1]
    counts = month.value_counts().sort_index().to_numpy()
    periods = [(starts[0], ends[warmup - 1])]
    lo, size = None, 0
    for start, end, count in zip(starts[warmup:], ends[warmup:], counts[warmup:], strict=True):
        lo = start if lo is None else lo
        size += count
        if size >= min_events:
            periods.append((lo, end))
            lo, size = None, 0
    return periods


def _wire(events: pd.DataFrame, vocab: dict) -> list[dict]:
    users, items, cats = vocab["users"], vocab["items"], vocab["categories"]
    return [{"user_id": users[u], "item_id": items[i], "category_id": cats[c],
             "event_type": "rating", "timestamp": int(t), "event_id": f"ml-{k}"}
            for k, u, i, c, t in zip(events.index, events["user"], events["item"],
                                     events["category"], events["timestamp"], strict=True)]


def _points(events: pd.DataFrame, features: np.ndarray, period: tuple[int, int],
            per_user: int, config) -> UserTable:
    """The period's scored moments: each user's first ``per_user`` CI boundaries in it."""
    cis = category_interactions(events, config.window_seconds)
    starts = boundaries(cis)
    inside = starts[(starts["start"] >= period[0]) & (starts["start"] < period[1])]
    inside = inside[inside["before"] > 0]  # a past to recommend from
    inside = inside[inside.groupby("user").cumcount() < per_user]
    frame = examples_at(events, cis, features, inside["user"].to_numpy(),
                        inside["start"].to_numpy(), config, Horizon("cis", 1))
    return frame


def _gain_interval(pairs: list[tuple], seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean over periods of HR@1(continual) − HR@1(frozen)."""
    gains = np.zeros(DRAWS)
    for k, (frozen, continual) in enumerate(pairs):
        weights = resample_weights(len(frozen), DRAWS, seed + k)
        gains += (resampled_metrics(continual, weights)["HR@1"]
                  - resampled_metrics(frozen, weights)["HR@1"])
    gains /= len(pairs)
    return float(np.percentile(gains, 2.5)), float(np.percentile(gains, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--users", type=int, default=600, help="seeded sample of users")
    parser.add_argument("--warmup", type=int, default=2, help="months of the first model")
    parser.add_argument("--periods", type=int, default=8, help="most scored periods")
    parser.add_argument("--min-events", type=int, default=2000)
    parser.add_argument("--points", type=int, default=5, help="scored moments per user")
    parser.add_argument("--window-days", type=float, default=14.0)
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs per stage")
    parser.add_argument("--first-epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("kafka", "feast", "ccrec", "streaming", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import torch

    torch.set_num_threads(1)
    prepared = load_prepared(args.dataset)
    spec = SequenceSpec(**prepared.meta["config"]["sequence"])
    events = prepared.events()
    rng = np.random.default_rng(0)
    sample = rng.choice(events["user"].unique(), size=args.users, replace=False)
    events = events[events["user"].isin(sample)].sort_values(
        ["timestamp", "user", "item"], kind="stable").reset_index(drop=True)
    features = np.zeros((len(prepared.vocab["users"]), len(prepared.feature_cardinalities)),
                        np.int64)
    profiles = prepared.examples.drop_duplicates("user")
    features[profiles["user"].to_numpy()] = np.stack(profiles["user_features"].to_numpy())
    periods = _periods(events, args.warmup, args.min_events)[:args.periods + 1]
    log.info("%d users, %d events, %d periods", args.users, len(events), len(periods))

    rows, pairs, seconds, staleness = [], [], [], []
    work = Path(tempfile.mkdtemp(prefix="ccrec-continual-"))
    bundles = work / "bundles"
    # the first model: the data set's configuration with fewer epochs
    first = yaml.safe_load((Path(__file__).parents[1] / "ccrec" / "configs"
                            / f"{args.dataset}.yaml").read_text())
    for stage in ("train_sampler", "train_encoder", "train_scorer"):
        first[stage]["epochs"] = args.first_epochs
    first_path = work / "first.yaml"
    first_path.write_text(yaml.safe_dump(first))
    config = RetrainConfig(window_days=args.window_days, epochs=args.epochs,
                           config=str(first_path))
    with LocalLoop(prepared.path, work / "feast") as loop:
        load_static_features(loop.store, prepared)
        frozen = None
        for index, period in enumerate(periods):
            part = events[(events["timestamp"] >= period[0]) & (events["timestamp"] < period[1])]
            if index > 0:
                table = _points(events, features, period, args.points, spec)
                current = Bundle.load(Registry(bundles).path(Registry(bundles).current))
                users = UserTable(table, prepared.num_categories, current.config.max_past,
                                  current.config.encoder.item_profile_dim)
                scored = (evaluate_sums(frozen.model, users), evaluate_sums(current.model, users))
                pairs.append(scored)
                rows.append({"period": pd.Timestamp(period[0], unit="s").strftime("%Y-%m"),
                             "end": pd.Timestamp(period[1], unit="s").strftime("%Y-%m-%d"),
                             "n": len(users), "events": len(part),
                             "frozen_version": frozen.version, "continual_version": current.version,
                             "frozen": scored[0].metrics()["HR@1"],
                             "continual": scored[1].metrics()["HR@1"]})
                log.info("period %s: n=%d frozen %.4f continual %.4f", rows[-1]["period"],
                         len(users), rows[-1]["frozen"], rows[-1]["continual"])
                if index == len(periods) - 1:
                    break
            loop.ingest(_wire(part, prepared.vocab))
            applied_at = time.time()
            started = time.perf_counter()
            result = retrain_cycle(loop.store, bundles, config, prepared=prepared.path,
                                   work_dir=work / "cycles")
            seconds.append(time.perf_counter() - started)
            staleness.append(time.time() - applied_at)
            load = os.getloadavg()[0]
            log.info("cycle %d: %s %s in %.0fs (load %.1f) gate %s", index, result.version,
                     "published" if result.published else "rejected", seconds[-1], load,
                     result.gate)
            if index == 0:
                frozen = Bundle.load(bundles / result.version)
            if rows:
                rows[-1]["cycle_after"] = {"version": result.version,
                                           "published": result.published, "gate": result.gate,
                                           "examples": result.examples,
                                           "seconds": seconds[-1], "load_1m": load}

    gains = [r["continual"] - r["frozen"] for r in rows]
    out = {
        "periods": [r["period"] for r in rows],
        "frozen": {"HR@1": [r["frozen"] for r in rows]},
        "continual": {"HR@1": [r["continual"] for r in rows]},
        "n": [r["n"] for r in rows],
        "mean_gain_HR@1": float(np.mean(gains)) if gains else None,
        "mean_gain_HR@1_ci": list(_gain_interval(pairs)) if pairs else None,
        "retrain_seconds": {"p50": float(np.median(seconds)), "max": float(np.max(seconds))},
        "staleness_s": {"p50": float(np.median(staleness)), "max": float(np.max(staleness))},
        "setup": {"dataset": args.dataset, "users": args.users, "events": len(events),
                  "warmup_months": args.warmup, "points_per_user": args.points,
                  "window_days": args.window_days, "fine_tune_epochs": args.epochs,
                  "first_model_epochs": args.first_epochs, "trainer": "local (one process)",
                  "load_1m_end": os.getloadavg()[0], "cpus": os.cpu_count()},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=float))
    print(json.dumps({k: out[k] for k in ("periods", "frozen", "continual", "mean_gain_HR@1",
                                           "mean_gain_HR@1_ci", "retrain_seconds",
                                           "staleness_s")}, default=float))


if __name__ == "__main__":
    main()
