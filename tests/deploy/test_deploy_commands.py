"""Every `ccrec …` command line in deploy/ is accepted by the real CLI.

The compose services, the Kubernetes containers and the RayJob entrypoints
are parsed with click exactly as `ccrec` would parse them (options, choices,
required arguments), without running anything. Sub-command groups that plug in
through the ``ccrec.commands`` entry points are resolved from pyproject.toml,
so the check does not depend on how the package was installed; a plug-in
that does not import fails with its ImportError.
"""

from __future__ import annotations

import importlib
import shlex
import tomllib

import click
import pytest
import yaml
from deploy_schemas import DEPLOY, REPO, load_manifests


def _command_lines() -> list[tuple[str, list[str]]]:
    lines = []
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        command = service.get("command")
        if isinstance(command, list) and command[:1] == ["ccrec"]:
            lines.append((f"compose:{name}", command))
    for m in load_manifests():
        for container in _containers(m.body):
            if container.get("command", [])[:1] == ["ccrec"]:
                lines.append((f"{m.id}:{container['name']}", container["command"]))
        if m.kind == "RayJob":
            lines.append((m.id, shlex.split(m.body["spec"]["entrypoint"])))
    return lines


def _containers(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "containers":
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _containers(value)


def _plugins() -> dict[str, str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return pyproject["project"].get("entry-points", {}).get("ccrec.commands", {})


def _resolve(args: list[str]) -> tuple[tuple[str, ...], click.Command | None, list[str]]:
    from ccrec.cli import cli

    command: click.Command = cli
    path: list[str] = []
    rest = list(args[1:])
    while isinstance(command, click.Group) and rest:
        name = rest.pop(0)
        path.append(name)
        sub = command.commands.get(name)
        if sub is None and command is cli and name in _plugins():
            module, _, attr = _plugins()[name].partition(":")
            sub = getattr(importlib.import_module(module), attr)
        if sub is None:
            return tuple(path), None, rest
        command = sub
    return tuple(path), command, rest


LINES = _command_lines()


def test_deploy_runs_the_commands_it_should() -> None:
    paths = {tuple(args[1:3]) if args[1] == "stream" else (args[1],) for _, args in LINES}
    assert {("stream", "run"), ("train",), ("tune",)} <= paths


@pytest.mark.parametrize("where,args", LINES, ids=[w for w, _ in LINES])
def test_command_line_parses(where: str, args: list[str]) -> None:
    path, command, rest = _resolve(args)
    if command is None:
        pytest.fail(f"{where}: `ccrec {' '.join(path)}` does not exist")
    try:
        command.make_context(" ".join(["ccrec", *path]), list(rest))
    except click.ClickException as e:
        pytest.fail(f"{where}: {' '.join(args)}: {e.format_message()}")


def test_serve_run_deploys_the_application_of_serve_deployments() -> None:
    """compose's `serve run` line applies deploy/serve/serve_config.yaml; its import path
    is the module-level application, which binds exactly the deployments it configures."""
    from ray.serve import Application

    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    assert "serve run --address=auto deploy/serve/serve_config.yaml" in \
        compose["services"]["serve"]["command"][-1]
    config = yaml.safe_load((DEPLOY / "serve" / "serve_config.yaml").read_text())
    (application,) = config["applications"]
    module, _, attr = application["import_path"].partition(":")
    app = getattr(importlib.import_module(module), attr)
    assert isinstance(app, Application)
    bound, names = [app], []
    while bound:  # the graph: each bound deployment's children are its constructor arguments
        deployment = bound.pop(0)._bound_deployment
        names.append(deployment.name)
        bound += [a for a in deployment.init_args if isinstance(a, Application)]
    assert names == [d["name"] for d in application["deployments"]] == [
        "Ingress", "Sampler", "Scorer"]
