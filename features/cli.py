"""``ccrec features``: register the Feast definitions and load the static features.

:func:`feast_options` and :func:`open_from_options` are the store options of
every command that opens the feature store (`ccrec features apply`,
`ccrec stream run`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from features.environments import ENVIRONMENTS, FEATURES_DIR

if TYPE_CHECKING:
    from feast import FeatureStore


def feast_options(command: Callable) -> Callable:
    """Adds --feast-env, --root, --project and --redis-url to a click command."""
    options = [
        click.option("--feast-env", type=click.Choice(list(ENVIRONMENTS)), default="sqlite",
                     show_default=True,
                     help="The Feast environment, i.e. its feature_store.yaml: sqlite or redis "
                          "(file registry under --root), or production "
                          "(deploy/feast/feature_store.yaml)."),
        click.option("--root", type=click.Path(path_type=Path), default=FEATURES_DIR,
                     help="The feature store's root directory: relative paths of the "
                          "configuration and the parquet logs go under it (default: features/)."),
        click.option("--project", default=None,
                     help="The Feast project (default: the environment's)."),
        click.option("--redis-url", default=None,
                     help="Redis host:port[,db=N,password=P] (default: $CCREC_REDIS_URL, "
                          "else the environment's)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def open_from_options(
    feast_env: str, root: Path, project: str | None, redis_url: str | None
) -> FeatureStore:
    """The store the :func:`feast_options` name, definitions applied."""
    from features.store import open_store

    try:
        return open_store(root, feast_env, project=project, redis_url=redis_url)
    except ValueError as exc:  # an unknown environment, or an unset ${VAR} of its file
        raise click.ClickException(str(exc)) from exc


@click.group()
def features() -> None:
    """The Feast feature repository (features/)."""


@features.command("apply")
@feast_options
@click.option("--dataset", default=None,
              help="Also load this prepared data set's user profiles and category popularity.")
def apply_cmd(feast_env: str, root: Path, project: str | None, redis_url: str | None,
              dataset: str | None) -> None:
    """Register the definitions (like `feast apply`) and create the offline logs."""
    store = open_from_options(feast_env, root, project, redis_url)
    click.echo(f"applied the CCRec feature definitions in {Path(store.repo_path)}")
    if dataset:
        from ccrec.data.prepared import load_prepared
        from features.store import load_static_features

        counts = load_static_features(store, load_prepared(dataset))
        click.echo(f"loaded {counts}")
