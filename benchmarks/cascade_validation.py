"""The cascade against its ablations on the VALIDATION users: is every stage worth it?

Trains the cascade once (M1, the VAE, M2) and the ablation scorers on the same
M1 and VAE (MLE+VAE: plain MSE; MLE+Cascading: no VAE), scores every row on
the validation users (never the test users, so choices made from this table
do not touch the test set), and prints JSON::

    {"n": …, "config": {…}, "seconds": {…}, "load_average": {"start": …, "end": …},
     "rows": {"<row>": {"HR@1": x, "HR@1_ci": [lo, hi], "Precision@3": …, …}},
     "paired": {"<row>": {"HR@1": {"diff": d, "diff_ci": […], "p": p}, "Precision@3": …}},
     "newcomers": {"n": …, "rows": {…}, "paired": {…}}}

``paired`` is CCRec minus that row (paired bootstrap over users, 95 %);
``newcomers`` repeats the table on the validation users seen with no past
(only f_t known: the profile-based cold start against M1's prior).

Usage: ``CCREC_HOME=… python -m benchmarks.cascade_validation [--dataset ml-1m]
[--threads 2] [--set KEY=VALUE …] [--out benchmarks/results/cascade_validation.json]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccrec.bootstrap import intervals, paired_test, resample_weights  # noqa: E402
from ccrec.config import load, to_dict  # noqa: E402
from ccrec.data.prepared import load_prepared  # noqa: E402
from ccrec.data.tables import UserTable  # noqa: E402
from ccrec.metrics import evaluate_sums  # noqa: E402
from ccrec.models.cascade import CascadeConfig  # noqa: E402
from ccrec.train.cascade import train_cascade  # noqa: E402

METRICS = ("HR@1", "Precision@3", "HR@3", "F1@3")


def table(sums_by_row: dict, draws: int = 1000) -> dict:
    """Each row's metrics with 95 % intervals, and CCRec's paired test against each."""
    first = next(iter(sums_by_row.values()))
    weights = resample_weights(len(first), draws, seed=0)
    rows, paired = {}, {}
    for name, sums in sums_by_row.items():
        values, cis = sums.metrics(), intervals(sums, weights=weights)
        rows[name] = {m: v for metric in METRICS for m, v in
                      ((metric, values[metric]), (f"{metric}_ci", list(cis[metric])))}
    for name, sums in sums_by_row.items():
        if name == "CCRec":
            continue
        paired[name] = {}
        for metric in ("HR@1", "Precision@3"):
            test = paired_test(sums_by_row["CCRec"], sums, metric, weights=weights)
            paired[name][metric] = {"diff": test.diff, "diff_ci": list(test.diff_ci),
                                    "p": test.p}
    return {"n": len(first), "rows": rows, "paired": paired}


def newcomers(valid: UserTable) -> UserTable:
    """The validation users as newcomers: the same futures, no past, f_t kept."""
    empty = UserTable.__new__(UserTable)
    empty.__dict__.update(valid.__dict__)
    empty.past_categories = np.zeros_like(valid.past_categories)
    return empty


def keep_training_users(prepared, count: int, seed: int = 0):
    """``prepared`` with the rows of ``count`` random training users (and every other split)."""
    frame = prepared.examples
    train = frame["split"] == "train"
    users = np.unique(frame.loc[train, "user"].to_numpy())
    kept = np.random.default_rng(seed).choice(users, min(count, len(users)), replace=False)
    prepared.examples = frame[~train | frame["user"].isin(kept)].reset_index(drop=True)
    return prepared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config", default=None)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=None)
    parser.add_argument("--train-users", type=int, default=None,
                        help="train on this many randomly drawn training users only "
                             "(a quick, reduced run; validation users are all kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    prepared = load_prepared(args.dataset)
    if args.train_users:
        prepared = keep_training_users(prepared, args.train_users)
    name = prepared.meta.get("dataset", args.dataset)
    config_path = args.config or ROOT / "ccrec" / "configs" / f"{name}.yaml"
    config = load(CascadeConfig, config_path, args.overrides)
    load_at_start = os.getloadavg()[0]
    started = time.perf_counter()
    result = train_cascade(prepared, config)
    seconds = dict(result.seconds)
    models = {"MLE": result.model.sampler}
    t = time.perf_counter()
    models["MLE+VAE"], _ = result.with_scorer(
        replace(config.scorer, use_vae=True, precision_loss="none"))
    models["MLE+Cascading"], _ = result.with_scorer(replace(config.scorer, use_vae=False))
    seconds["ablations"] = time.perf_counter() - t
    models["CCRec"] = result.model
    valid = result.tables["valid"]
    out = {"dataset": args.dataset, "train_users": args.train_users,
           "train_rows": len(result.tables["train"]), "config": to_dict(config),
           "fits": {k: f.summary() for k, f in result.fits.items()},
           **table({n: evaluate_sums(m, valid) for n, m in models.items()})}
    cold = newcomers(valid)
    out["newcomers"] = table({n: evaluate_sums(m, cold) for n, m in models.items()})
    seconds["total"] = time.perf_counter() - started
    out["seconds"] = seconds
    out["load_average"] = {"start": load_at_start, "end": os.getloadavg()[0]}
    text = json.dumps(out, indent=2, default=float)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
