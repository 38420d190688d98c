"""The ``ccrec`` command line.

Sub-command groups by job. The model library's own groups (``data``, …) are
defined here; the system's parts (``stream``, ``serve``, ``tune``, …) live in
their own packages and plug in through the ``ccrec.commands`` entry-point
group, so that :mod:`ccrec` never imports them (imports flow one way).
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points

import click
from rich.markup import escape

from ccrec.config import ConfigError
from ccrec.console import announce, console, report_failure, terminal
from ccrec.console import setup as setup_console
from ccrec.data.fetch import FetchError
from ccrec.data.prepare import PrepareError
from ccrec.data_commands import DATASET_HELP, data
from ccrec.schema import EventValidationError


class PluginGroup(click.Group):
    """The root group: built-in groups plus those registered as entry points."""

    def _plugins(self) -> dict[str, click.Command]:
        found = {}
        for entry in entry_points(group="ccrec.commands"):
            found[entry.name] = entry.load()
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._plugins().get(name)


@click.group(cls=PluginGroup)
@click.option("-v", "--verbose", is_flag=True,
              help="Also show the libraries' logs (at debug level) and warnings; without it "
                   "they go to the log file only.")
def cli(verbose: bool) -> None:
    """CCRec: real-time category recommendations (the cascading CCRec model)."""


cli.add_command(data)


def _cascade_config(dataset: str, config_path: str | None, overrides: tuple[str, ...]):
    """The data set's default YAML (ccrec/configs/<name>.yaml), a given file, plus --set."""
    from pathlib import Path

    from ccrec.config import load
    from ccrec.data.prepared import resolve
    from ccrec.models.cascade import CascadeConfig

    if config_path is None:
        meta = resolve(dataset) / "meta.json"  # a prepared variant (ml-1m-all) → its data set
        if meta.exists():
            dataset = json.loads(meta.read_text()).get("dataset", dataset)
        default = Path(__file__).parent / "configs" / f"{dataset}.yaml"
        config_path = str(default) if default.exists() else None
    return load(CascadeConfig, config_path, list(overrides))


def _load_for_training(dataset: str, category_level: str | None):
    from ccrec.data.prepare import prepare, prepared_name
    from ccrec.data.prepared import load_prepared, resolve

    name = dataset if resolve(dataset).is_dir() else prepared_name(dataset, category_level)
    if not (resolve(name) / "meta.json").exists():
        with console.status(f"preparing {dataset}"):
            prepare(dataset, category_level=category_level)
    return name, load_prepared(name)


def _training_options(f):
    f = click.option("--threads", default=1, show_default=True, type=int,
                     help="torch CPU threads (the machine is shared).")(f)
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a setting, e.g. --set candidates.size=5")(f)
    f = click.option("--config", "config_path", default=None,
                     help="YAML config (default: ccrec/configs/<dataset>.yaml).")(f)
    f = click.option("--category-level", default=None)(f)
    f = click.option("--dataset", required=True, help=f"{DATASET_HELP}, or a prepared dir")(f)
    return f


def _ray_options(f):
    """Ray Train options of ``ccrec train`` (see docs/training.md)."""
    for option in reversed([
        click.option("--ray/--local", "use_ray", default=True, show_default=True,
                     help="Each stage as a Ray Train job, or one local process."),
        click.option("--num-workers", default=2, show_default=True, type=int,
                     help="Ray Train workers per stage."),
        click.option("--min-workers", default=None, type=int,
                     help="Elastic: smallest worker group (with --max-workers)."),
        click.option("--max-workers", default=None, type=int,
                     help="Elastic: largest worker group (follows an autoscaling cluster)."),
        click.option("--address", default=None, help="Ray cluster address, e.g. auto."),
        click.option("--gpu", is_flag=True, help="One GPU per Ray worker."),
        click.option("--storage", default=None,
                     help="Checkpoint storage (default $CCREC_HOME/ray_results)."),
        click.option("--max-failures", default=1, show_default=True, type=int,
                     help="Worker-group restarts per stage."),
    ]):
        f = option(f)
    return f


def _plugin(group: str, name: str):
    """The object registered as ``name`` in the entry-point ``group`` (a system package's)."""
    for entry in entry_points(group=group):
        if entry.name == name:
            return entry.load()
    raise click.ClickException(f"{name!r} is not installed (entry point group {group})")


def _source_options(f):
    """Where ``ccrec train`` reads its examples (see docs/training.md)."""
    for option in reversed([
        click.option("--source", type=click.Choice(["prepared", "feast"]), default="prepared",
                     show_default=True,
                     help="The prepared data set, or the same task rebuilt from the Feast "
                          "offline log the stream worker writes (point in time)."),
        click.option("--feast-root", default="features", show_default=True,
                     help="--source feast: the feature store's root directory."),
        click.option("--feast-env", default="sqlite", show_default=True,
                     help="--source feast: the Feast environment (sqlite, redis, production)."),
        click.option("--feast-project", default=None,
                     help="--source feast: the Feast project (default: the environment's)."),
    ]):
        f = option(f)
    return f


@cli.command()
@_training_options
@click.option("--out", default=None, help="Bundles root (default runs/bundles/<dataset>).")
@_source_options
@_ray_options
def train(dataset: str, category_level: str | None, config_path: str | None,
          overrides: tuple[str, ...], threads: int, out: str | None, source: str,
          feast_root: str, feast_env: str, feast_project: str | None, **ray_options) -> None:
    """Train the cascade (M1 → VAE → M2) on Ray Train (or --local) and write a model bundle."""
    from pathlib import Path

    import torch

    from ccrec.train.run import ensure_prepared, train_and_bundle

    if ray_options["gpu"] and not ray_options["use_ray"]:
        raise click.UsageError("--gpu trains on Ray workers (one GPU each): use it with --ray")
    torch.set_num_threads(threads)
    with console.status(f"preparing {dataset}"):
        path = ensure_prepared(dataset, category_level)
    if source == "feast":
        from_store = _plugin("ccrec.sources", "feast")
        with console.status(f"building {path.name}'s examples from the Feast offline log"):
            path = from_store(path, Path(feast_root), feast_env, feast_project)
    config = _cascade_config(path.name, config_path, overrides)
    bundles_root = Path(out or f"runs/bundles/{path.name}")
    if ray_options.pop("use_ray"):
        from ccrec.train.run import train_with_ray

        announce()
        click.echo(train_with_ray(path, config, bundles_root, **ray_options))
        return
    click.echo(train_and_bundle(path, config, bundles_root).path)  # the log line has the metrics


@cli.command()
@click.option("--bundles", "bundles_root", required=True,
              help="The bundles root whose `current` serving follows.")
def rollback(bundles_root: str) -> None:
    """Serve the previous bundle again (`current` and `previous` swap)."""
    from pathlib import Path

    from ccrec.registry import Registry, RegistryError

    registry = Registry(Path(bundles_root))
    served = registry.current
    try:
        back = registry.rollback()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"serving {back} (was {served})")


def _evaluation_rows(models: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``--models`` → (cascade/simple rows, paper-baseline names)."""
    from ccrec.baselines.paper import PAPER_BASELINES
    from ccrec.evaluate import ROWS

    if models == "default":
        return ROWS, ()
    if models == "all":
        return ROWS, tuple(PAPER_BASELINES)
    names = [n.strip() for n in models.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS and n not in PAPER_BASELINES]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown {unknown}; use 'default', 'all' or names from "
            f"{', '.join((*ROWS, *PAPER_BASELINES))}", param_hint="--models")
    return (tuple(n for n in names if n in ROWS),
            tuple(n for n in names if n in PAPER_BASELINES))


@cli.command()
@_training_options
@click.option("--out-dir", default=None, help="Results directory (default runs/<dataset>).")
@click.option("--json", "json_path", default=None, help="Also write the results JSON here.")
@click.option("--sensitivity/--no-sensitivity", default=True,
              help="Also sweep |r_t| (paper Fig. 7).")
@click.option("--bundle/--no-bundle", "with_bundle", default=True,
              help="Save the CCRec cascade as a bundle under <out-dir>/bundles.")
@click.option("--models", "models", default="default", show_default=True,
              help="Rows: 'default' (CCRec, ablations, the simple baselines), 'all' "
                   "(also the paper's baselines), or a comma list, e.g. CCRec,SASRec.")
@click.option("--replay-points", default=None, type=int,
              help="Replayed moments per test user (default 20).")
def evaluate(dataset: str, category_level: str | None, config_path: str | None,
             overrides: tuple[str, ...], threads: int, out_dir: str | None,
             json_path: str | None, sensitivity: bool, with_bundle: bool, models: str,
             replay_points: int | None) -> None:
    """Train the rows; score warm, cold and replayed test users; write the report.

    Rows of earlier runs in the same --out-dir (same prepared data) stay in the report.
    """
    from pathlib import Path

    import torch

    from ccrec.evaluate import SENSITIVITY_SIZES, run_evaluation

    torch.set_num_threads(threads)
    rows, baselines = _evaluation_rows(models)
    name, prepared = _load_for_training(dataset, category_level)
    config = _cascade_config(name, config_path, overrides)
    out = Path(out_dir or f"runs/{Path(name).name}")
    summary = run_evaluation(
        prepared, config, out_dir=out, json_path=Path(json_path) if json_path else None,
        sensitivity_sizes=SENSITIVITY_SIZES if sensitivity else (),
        bundle_root=out / "bundles" if with_bundle else None, title=Path(name).name,
        rows=rows, baselines=baselines, replay_points=replay_points,
    )
    report = summary["report"]
    for group, n in report["n"].items():
        best = report["best"].get(group, {}).get("HR@1", {})
        click.echo(f"{group}: n = {n} users, {report['points'][group]} points; best HR@1 "
                   f"{best.get('row')} (p vs runner-up {best.get('p', float('nan')):.3g})")
    console.print(f"done in {summary['seconds']:.0f}s → {out / 'report.html'}")


@cli.group(invoke_without_command=True)
@click.option("--out-dir", default=None, help="A results directory of `ccrec evaluate`.")
@click.option("--json", "json_path", default=None, help="Also write the results JSON here.")
@click.option("--title", default=None, help="Title of the tables and plots.")
@click.option("--secondary", "secondary_dir", default=None,
              help="A results directory of the same data on another task (e.g. future "
                   "all): its tables go under 'secondary'.")
@click.pass_context
def report(ctx: click.Context, out_dir: str | None, json_path: str | None, title: str | None,
           secondary_dir: str | None) -> None:
    """Rewrite the report of --out-dir from its stored rows (e.g. after separate runs);
    `ccrec report online`: the accuracy of the served model versions."""
    if ctx.invoked_subcommand is not None:
        return
    from pathlib import Path

    from ccrec.evaluate import ROW_ORDER
    from ccrec.report import build_report, load_protocol, load_rows, write_report

    if out_dir is None:
        raise click.UsageError("--out-dir is required (or a sub-command, e.g. `online`)")

    def stored(path: Path, hint: str):
        rows = load_rows(path, order=ROW_ORDER)
        if not rows:
            raise click.BadParameter(f"{path} has no stored rows", param_hint=hint)
        return rows

    out = Path(out_dir)
    rows = stored(out, "--out-dir")
    secondary = None
    if secondary_dir is not None:
        second = Path(secondary_dir)
        secondary = build_report(stored(second, "--secondary"), load_protocol(second))
    write_report(rows, out, title or out.name, protocol=load_protocol(out),
                 json_path=Path(json_path) if json_path else None, secondary=secondary)
    console.print(f"report → {out / 'report.html'}")


@report.command("online")
@click.option("--log-dir", default=None,
              help="The online accuracy log (default: where `ccrec stream accuracy` writes, "
                   "data/offline/online_accuracy under the installed feature repository).")
@click.option("--plot", default="runs/online_accuracy.png", show_default=True,
              help="Where the plot over time goes.")
def report_online(log_dir: str | None, plot: str) -> None:
    """Online HR@1, HR@3, Precision@3 per served model version (n, 95 % bootstrap CI)."""
    from pathlib import Path

    from ccrec.online import LOG_SUBDIR, format_table, load_log, online_plot, online_table

    if log_dir is None:
        from importlib.util import find_spec

        spec = find_spec("features")
        if spec is None or spec.origin is None:
            raise click.UsageError("no feature repository installed: pass --log-dir")
        log_dir = str(Path(spec.origin).parent / LOG_SUBDIR)
    rows = load_log(log_dir)
    if rows.empty:
        console.print(f"no online accuracy rows in {log_dir} yet (run `ccrec stream accuracy`)")
        return
    click.echo(format_table(online_table(rows)))
    online_plot(rows, Path(plot))
    console.print(f"plot → {plot}")


VERBOSE_FLAGS = ("-v", "--verbose")


def main() -> None:
    """Entry point: the console of :mod:`ccrec.console` (``-v``/``--verbose`` anywhere on
    the line), and one clear line instead of a traceback for bad input."""
    args = sys.argv[1:]
    verbose = any(a in VERBOSE_FLAGS for a in args)
    args = ["--verbose"] * verbose + [a for a in args if a not in VERBOSE_FLAGS]
    setup_console(verbose)
    try:
        cli(args=args, prog_name="ccrec", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show(file=terminal)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.exit(130)
    except (EventValidationError, ConfigError, FetchError, FileNotFoundError,
            PrepareError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 (the traceback goes to the log file)
        if verbose:
            raise
        report_failure(exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
