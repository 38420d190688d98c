"""``ccrec tune``: search the cascade's hyperparameters with Ray Tune (ASHA + Optuna)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import yaml

from tune.space import OBJECTIVES, search_space


def _fixed(values: tuple[str, ...]) -> dict:
    known = search_space()
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or key not in known:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE with KEY in {sorted(known)}")
        out[key] = yaml.safe_load(raw)
    return out


@click.command("tune")
@click.option("--dataset", required=True, help="A prepared data set name or directory "
              "(ml-1m, complete-journey, events:PATH are prepared when needed).")
@click.option("--category-level", default=None)
@click.option("--config", "config_path", default=None,
              help="Base YAML config (default ccrec/configs/<dataset>.yaml).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a base setting, e.g. --set train_scorer.epochs=5")
@click.option("--fix", "fixed", multiple=True, metavar="PARAM=VALUE",
              help="Hold a search-space parameter constant, e.g. --fix layers=2")
@click.option("--num-samples", default=8, show_default=True, type=int, help="Trials.")
@click.option("--objective", type=click.Choice(OBJECTIVES), default=OBJECTIVES[0],
              show_default=True,
              help="Validation metric to maximise (validation users only); M2 is "
                   "early-stopped on it too.")
@click.option("--num-workers", default=1, show_default=True, type=int,
              help="Ray Train workers per trial and stage.")
@click.option("--max-concurrent", default=1, show_default=True, type=int,
              help="Trials at once.")
@click.option("--grace-period", default=1, show_default=True, type=int,
              help="M2 epochs before ASHA may stop a trial.")
@click.option("--optuna/--random", "use_optuna", default=True, show_default=True,
              help="Optuna search (when installed) or random search.")
@click.option("--address", default=None, help="Ray cluster address, e.g. auto.")
@click.option("--gpu", is_flag=True, help="One GPU per Ray Train worker.")
@click.option("--out", "out_dir", default=None,
              help="Output directory (default runs/tune/<dataset>).")
@click.option("--seed", default=0, show_default=True, type=int)
def tune(dataset: str, category_level: str | None, config_path: str | None,
         overrides: tuple[str, ...], fixed: tuple[str, ...], num_samples: int, objective: str,
         num_workers: int, max_concurrent: int, grace_period: int, use_optuna: bool,
         address: str | None, gpu: bool, out_dir: str | None, seed: int) -> None:
    """Search |r_t|, width, layers, heads, dropout, lr, batch size, VAE latent size and the
    precision-loss weight; write trials.csv/.md, trials.png, best.json and the best bundle."""
    import ray

    from ccrec.config import load
    from ccrec.console import announce, quiet_libraries
    from ccrec.models.cascade import CascadeConfig
    from ccrec.train.run import ensure_prepared
    from ccrec.train.stage_runner import RayConfig
    from tune.driver import run_tuning

    path = ensure_prepared(dataset, category_level)
    if config_path is None:
        default = Path(__file__).resolve().parent.parent / "ccrec" / "configs" / f"{path.name}.yaml"
        config_path = str(default) if default.exists() else None
    base = load(CascadeConfig, config_path, list(overrides))
    if not ray.is_initialized():
        announce()
        ray.init(address=address, log_to_driver=False)
        quiet_libraries()
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    summary = run_tuning(
        path, base, RayConfig(num_workers=num_workers, use_gpu=gpu, address=address),
        Path(out_dir or f"runs/tune/{path.name}"), num_samples=num_samples,
        objective=objective, fixed=_fixed(fixed), max_concurrent=max_concurrent,
        grace_period=grace_period, use_optuna=use_optuna, seed=seed)
    click.echo(summary.trials.to_markdown(index=False, floatfmt=".4f"))
    click.echo(json.dumps({"best_trial": summary.best_trial, objective: summary.best_value,
                           "params": summary.best_params, "bundle": str(summary.bundle),
                           "table": str(summary.table), "plot": str(summary.plot)}, indent=2))
