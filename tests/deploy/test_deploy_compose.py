"""deploy/compose/compose.yaml: parses, follows the Compose Specification, and
references only variables, images and files that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml
from deploy_schemas import DEPLOY, REPO, SCHEMAS, VAR, compose_config, env_example

COMPOSE = DEPLOY / "compose" / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "compose" / ".env.example"
# Official images the compose file may pull, each with a version tag and the digest.
OFFICIAL = {"apache/kafka", "redis", "postgres", "rayproject/ray"}
PINNED_TAG = re.compile(r"^\d+(\.\d+)+([-.][\w.]+)?$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
#: Variables without a default: the secrets, which .env must set.
SECRETS = {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "KAFKA_CLIENT_PASSWORD", "RAY_AUTH_TOKEN"}


def _strings(node):
    """Every string value of the parsed file (compose interpolates values only)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def _uses(text: str) -> list[tuple[str, str | None]]:
    """(variable, default or None) for every interpolation in the file's values."""
    out = []
    for m in VAR.finditer("\n".join(_strings(yaml.safe_load(text)))):
        if m.group(0) == "$$":
            continue
        name = m.group(1) or m.group(4)
        default = m.group(3) if m.group(2) in {"-", ":-"} else None
        out.append((name, default))
    return out


def test_compose_parses_and_follows_the_compose_spec() -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(raw, dict) and raw["services"]
    schema = json.loads((SCHEMAS / "compose" / "compose-spec.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose_config())]
    assert not errors, "\n".join(errors)


def test_a_broken_compose_field_fails_the_spec() -> None:
    schema = json.loads((SCHEMAS / "compose" / "compose-spec.json").read_text())
    config = compose_config()
    config["services"]["stream"]["deploy"]["replica"] = 2
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(config))


def test_every_variable_is_defined_or_has_a_default() -> None:
    env = env_example()
    uses = _uses(COMPOSE.read_text())
    assert uses
    missing = sorted({name for name, default in uses if default is None and name not in env})
    assert not missing, f"used in compose.yaml, not in .env.example, no default: {missing}"
    # and .env.example documents nothing that compose.yaml does not use
    unused = sorted(set(env) - {name for name, _ in uses})
    assert not unused, f".env.example defines unused variables: {unused}"
    # Defaults in compose.yaml agree with the values .env.example shows.
    for name, default in uses:
        if default is not None:
            assert env.get(name, default) == default, (name, env.get(name), default)


def test_without_an_env_file_only_secrets_are_missing() -> None:
    # With no .env at all, only the variables without defaults are required.
    required = {name for name, default in _uses(COMPOSE.read_text()) if default is None}
    assert required == SECRETS
    config = compose_config(dict.fromkeys(SECRETS, "x"))
    assert config["services"]["kafka"]["image"] == env_example()["KAFKA_IMAGE"]
    assert config["services"]["kafka"]["image"].startswith("apache/kafka:3.9.1@sha256:")


def test_images_are_built_here_or_pinned_official_images() -> None:
    config = compose_config()
    built = set()
    for name, service in config["services"].items():
        image = service.get("image")
        assert image, f"service {name} has no image"
        if "build" in service:
            build = service["build"]
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context == REPO, (name, context)
            assert (context / build["dockerfile"]).is_file(), (name, build)
            assert build["dockerfile"] == "deploy/Dockerfile"
            built.add(image)
            continue
        reference, _, digest = image.partition("@")
        repo, _, tag = reference.rpartition(":")
        assert repo in OFFICIAL, f"service {name}: {image} is neither built here nor official"
        assert PINNED_TAG.match(tag), f"service {name}: {image} is not pinned to a version"
        assert DIGEST.match(digest), f"service {name}: {image} is not pinned by digest"
    assert built == {"ccrec:0.1.0"}


def test_services_are_wired() -> None:
    config = compose_config()
    services = config["services"]
    assert {"kafka", "redis", "ray-head", "ray-worker", "stream", "serve"} <= set(services)
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, (name, dep)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            # a named volume, or a directory make-secrets.sh writes, mounted read-only
            assert source in config["volumes"] or (
                source.startswith("./secrets/") and volume.endswith(":ro")), (name, volume)
    # KRaft: one node that is both broker and controller, no ZooKeeper.
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("zookeeper" in k.lower() for k in kafka)
    stream = services["stream"]
    assert stream["command"][:3] == ["ccrec", "stream", "run"]
    assert "production" == stream["command"][stream["command"].index("--feast-env") + 1]
    env = stream["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["CCREC_REDIS_URL"].split(":")[0] == "redis"
    assert env["FEAST_REGISTRY_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["FEAST_REGISTRY_URL"]
    # The topics service creates the click stream, its DLQ and the impression log.
    topics = " ".join(services["kafka-topics"]["command"])
    assert "ccrec.interactions ccrec.interactions.dlq ccrec.recommendations" in topics
    # Files the containers read exist in the repository (the image is the repo).
    serve_cmd = " ".join(services["serve"]["command"])
    assert "deploy/serve/serve_config.yaml" in serve_cmd
    assert (REPO / "deploy/serve/serve_config.yaml").is_file()
    feast_cmd = services["feast-apply"]["command"]
    yaml_arg = feast_cmd[feast_cmd.index("--feature-store-yaml") + 1]
    # Feast resolves --feature-store-yaml from the working directory (the image's /app, the
    # repository root), not from --chdir
    assert (REPO / yaml_arg).resolve() == DEPLOY / "feast" / "feature_store.yaml"
    # Ports published on the host's loopback only: Serve HTTP on the head.
    assert services["ray-head"]["ports"] == ["127.0.0.1:8000:8000"]


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_accepts_it(tmp_path) -> None:
    """`docker compose config` (works without an engine) where the plugin exists."""
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed")
    env = tmp_path / ".env"
    env.write_text(ENV_EXAMPLE.read_text())
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env), "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
