"""``ccrec features``: register the Feast definitions and load the static features."""

from __future__ import annotations

from pathlib import Path

import click

from features.store import FEATURES_DIR, load_static_features, open_store


@click.group()
def features() -> None:
    """The Feast feature repository (features/)."""


@features.command("apply")
@click.option("--online", type=click.Choice(["sqlite", "redis"]), default="sqlite",
              show_default=True)
@click.option("--root", type=click.Path(path_type=Path), default=FEATURES_DIR,
              help="The feature store's root directory (default: features/).")
@click.option("--project", default="ccrec", show_default=True)
@click.option("--dataset", default=None,
              help="Also load this prepared data set's user profiles and category popularity.")
def apply_cmd(online: str, root: Path, project: str, dataset: str | None) -> None:
    """Register the definitions (like `feast apply`) and create the offline logs."""
    store = open_store(root, online, project=project)
    click.echo(f"applied the CCRec feature definitions in {Path(store.repo_path)}")
    if dataset:
        from ccrec.data.prepared import load_prepared

        counts = load_static_features(store, load_prepared(dataset))
        click.echo(f"loaded {counts}")
