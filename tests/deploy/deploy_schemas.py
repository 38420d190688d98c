"""Helpers of tests/deploy: load deploy/k8s/ manifests, validate them against deploy/schemas/

Every YAML document under deploy/k8s/ is validated by its (apiVersion, kind)
against deploy/schemas/: the Kubernetes definitions (pruned from
kubernetes-validate, strict flavour: unknown fields fail) and the CRD schemas
of KubeRay, Strimzi and KEDA. A kind without a vendored schema fails.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S_DIR = DEPLOY / "k8s"
SCHEMAS = DEPLOY / "schemas"
K8S_SCHEMA = "kubernetes-v1.33-strict.json"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "compose" / ".env.example"
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}; $$ escapes a dollar.
NAME = r"[A-Za-z_][A-Za-z0-9_]*"
VAR = re.compile(rf"\$\$|\$\{{({NAME})(?:(:?[-?])([^}}]*))?\}}|\$({NAME})")


@dataclass(frozen=True)
class Manifest:
    """One YAML document of a file under deploy/k8s/."""

    path: Path
    index: int
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.body.get("kind", "")

    @property
    def name(self) -> str:
        meta = self.body.get("metadata") or {}
        return meta.get("name") or meta.get("generateName", "")

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(DEPLOY)}#{self.index} {self.kind}/{self.name}"


def load_manifests() -> list[Manifest]:
    out = []
    for path in sorted(K8S_DIR.rglob("*.y*ml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                out.append(Manifest(path, i, doc))
    return out


def _schema_files() -> list[Path]:
    return sorted(
        p for p in SCHEMAS.rglob("*") if p.suffix in {".json", ".yaml"} and "compose" not in p.parts
    )


def _load(path: Path) -> dict:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


@cache
def schema_registry() -> tuple[Registry, dict[tuple[str, str], str]]:
    """The registry of every vendored schema (by file name) and the kind index.

    Returns:
        (registry, index) where index maps (apiVersion, kind) to a schema URI.
    """
    registry: Registry = Registry()
    index: dict[tuple[str, str], str] = {}
    for path in _schema_files():
        contents = _load(path)
        registry = registry.with_resource(
            path.name, Resource.from_contents(contents, default_specification=DRAFT202012)
        )
        if path.name == K8S_SCHEMA:
            for name, definition in contents["$defs"].items():
                for gvk in definition.get("x-kubernetes-group-version-kind", []):
                    group, version = gvk["group"], gvk["version"]
                    api_version = f"{group}/{version}" if group else version
                    # Only kinds whose definition is the whole resource.
                    if "kind" in definition.get("properties", {}):
                        index[(api_version, gvk["kind"])] = f"{K8S_SCHEMA}#/$defs/{name}"
        else:
            props = contents.get("properties", {})
            key = (props["apiVersion"]["const"], props["kind"]["const"])
            assert key not in index, f"two schemas for {key}"
            index[key] = path.name
    return registry.crawl(), index


def validation_errors(body: dict[str, Any]) -> list[str]:
    """Every schema error of one manifest ([] if it is valid).

    Raises:
        LookupError: no vendored schema for its apiVersion/kind.
    """
    registry, index = schema_registry()
    key = (body.get("apiVersion"), body.get("kind"))
    if key not in index:
        raise LookupError(f"no vendored schema for apiVersion={key[0]!r} kind={key[1]!r}")
    validator = jsonschema.Draft202012Validator(
        {"$ref": index[key]},
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    out = []
    for error in validator.iter_errors(body):
        # For anyOf / oneOf (nullable fields, KEDA's optional objects) report the
        # branch that came closest, not the whole failing value.
        while error.context:
            error = jsonschema.exceptions.best_match(error.context)
        where = "/".join(map(str, error.absolute_path)) or "<root>"
        out.append(f"{where}: {error.message[:300]}")
    return sorted(out)


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [m for m in manifests if m.kind == kind and (name is None or m.name == name)]


def ray_clusters(manifests: list[Manifest]):
    """(manifest, RayCluster spec) of every Ray cluster: RayClusters, the clusters RayJobs
    bring, the RayService's."""
    for m in find(manifests, "RayCluster"):
        yield m, m.body["spec"]
    for m in find(manifests, "RayJob"):
        if "rayClusterSpec" in m.body["spec"]:
            yield m, m.body["spec"]["rayClusterSpec"]
    for m in find(manifests, "RayService"):
        yield m, m.body["spec"]["rayClusterConfig"]


# ---- docker compose: the file as compose reads it ---------------------------------------


def env_example() -> dict[str, str]:
    env = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            env[key.strip()] = value.strip()
    return env


def interpolate(node, env: dict[str, str]):
    """Substitute variables in every value, as compose does; a value that was one
    whole ${...} is read as a YAML scalar again (compose casts "2" to 2)."""
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if not isinstance(node, str):
        return node

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        if name in env and (env[name] or m.group(2) not in {":-", ":?"}):
            return env[name]
        if m.group(2) in {"-", ":-"}:
            return m.group(3)
        raise KeyError(name)

    value = VAR.sub(sub, node)
    if VAR.fullmatch(node) and node != "$$":
        return yaml.safe_load(value) if value else value
    return value


def compose_config(env: dict[str, str] | None = None) -> dict:
    """deploy/compose/compose.yaml with ``env`` (default .env.example) substituted."""
    raw = yaml.safe_load(COMPOSE.read_text())
    return interpolate(raw, env_example() if env is None else env)
