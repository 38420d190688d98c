"""``ccrec serve …``: run the Serve graph or the single-process app, write the OpenAPI docs."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path

import click

from features.cli import feast_options
from serve.auth import INSECURE_ENV, KEYS_FILE_ENV, Scope

log = logging.getLogger(__name__)


def auth_options(command):
    """Adds --api-keys and --insecure-dev to a click command."""
    command = click.option(
        "--insecure-dev", is_flag=True, envvar=INSECURE_ENV,
        help=f"Serve WITHOUT authentication (development only; ${INSECURE_ENV}=1).")(command)
    return click.option(
        "--api-keys", type=click.Path(exists=True, dir_okay=False, path_type=Path),
        envvar=KEYS_FILE_ENV,
        help=f"The API keys file (hashes and scopes; `ccrec serve keys` makes keys; "
             f"default ${KEYS_FILE_ENV}).")(command)


def auth_env(api_keys: Path | None, insecure_dev: bool) -> dict[str, str]:
    """The environment that configures authentication in a serving process."""
    if insecure_dev:
        return {INSECURE_ENV: "1"}
    if api_keys is None:
        raise click.UsageError("give --api-keys FILE (`ccrec serve keys` makes a key), or "
                               "--insecure-dev to serve without authentication")
    return {KEYS_FILE_ENV: str(api_keys.resolve())}


def _features(feast_env: str, root: Path, project: str | None, redis_url: str | None) -> dict:
    """The Ingress's feature source (:func:`features.reader.reader_from_config`)."""
    return {"source": "feast", "environment": feast_env, "root": str(root.resolve()),
            "project": project, "redis_url": redis_url}


@click.group()
def serve() -> None:
    """Online serving: the Ray Serve graph (Ingress → Sampler → Scorer) and its HTTP API."""


@serve.command("run")
@click.option("--bundle", required=True, help="Model bundle directory (ccrec train writes it).")
@feast_options
@auth_options
@click.option("--kafka", default=None, help="Bootstrap servers for POST /v1/events "
              "(default $KAFKA_BOOTSTRAP_SERVERS).")
@click.option("--port", default=8000, show_default=True, help="Serve proxy port.")
@click.option("--direct-port", default=8001, show_default=True,
              help="The Ingress replica's own HTTP port (Serve's direct ingress, fastest).")
@click.option("--address", default=None, help="Ray cluster address (default: start one).")
@click.option("--fast/--no-fast", default=True, show_default=True,
              help="Serve's fast request path (RAY_SERVE_THROUGHPUT_OPTIMIZED).")
def run_cmd(bundle: str, feast_env: str, root: Path, project: str | None,
            redis_url: str | None, api_keys: Path | None, insecure_dev: bool,
            kafka: str | None, port: int, direct_port: int, address: str | None,
            fast: bool) -> None:
    """Start Ray and the Serve graph from serve/serve_config.yaml; Ctrl-C stops."""
    import ray
    from ray import serve as ray_serve

    from ccrec.console import announce, quiet_libraries
    from serve import runtime

    env = auth_env(api_keys, insecure_dev)
    if fast:
        runtime.apply_fast_path(direct_port)
    announce()
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    quiet_libraries()
    try:
        ray_serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = runtime.serve_config(bundle=str(Path(bundle).resolve()), port=port,
                                      features=_features(feast_env, root, project, redis_url),
                                      kafka=kafka, env=env)
        runtime.deploy(config)
        runtime.wait_ready(f"http://127.0.0.1:{port}", path="/healthz")
        click.echo(f"CCRec is serving on http://127.0.0.1:{port} "
                   f"(direct ingress http://127.0.0.1:{direct_port}); docs at /docs")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    finally:
        ray_serve.shutdown()
        ray.shutdown()


@serve.command("plain")
@click.option("--bundle", required=True, help="Model bundle directory.")
@feast_options
@auth_options
@click.option("--port", default=8000, show_default=True)
def plain_cmd(bundle: str, feast_env: str, root: Path, project: str | None,
              redis_url: str | None, api_keys: Path | None, insecure_dev: bool,
              port: int) -> None:
    """The same API in one process (uvicorn, no Ray): the latency baseline."""
    import os

    import uvicorn

    from features.reader import reader_from_config
    from serve.plain import PlainHost

    os.environ.update(auth_env(api_keys, insecure_dev))
    app = PlainHost(bundle, reader_from_config(_features(feast_env, root, project, redis_url))).app
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@serve.command("openapi")
@click.option("--out", default="docs/openapi.json", show_default=True)
def openapi_cmd(out: str) -> None:
    """Write the HTTP API's OpenAPI schema (the API reference)."""
    from features.reader import MemoryFeatures
    from serve.auth import Authenticator
    from serve.plain import PlainHost

    spec = PlainHost(None, MemoryFeatures(), auth=Authenticator()).app.openapi()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(spec, indent=2) + "\n")
    click.echo(out)


@serve.command("keys")
@click.option("--name", required=True, help="Who holds the key (shown in logs).")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice([s.value for s in Scope]),
              help="What the key may do (repeat for several).")
@click.option("--file", "keys_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Append the key's record to this keys file (created if "
              "missing); without it the record is printed.")
def keys_cmd(name: str, scopes: tuple[str, ...], keys_file: Path | None) -> None:
    """Make an API key: prints the key once (give it to the client) and its record
    (only the SHA-256 hash and the scopes) for the keys file or Secret."""
    import yaml

    from ccrec.console import terminal
    from serve.auth import append_key, new_key

    key, record = new_key(name, scopes)
    click.echo(key)  # stdout: the key alone with --file, for KEY=$(ccrec serve keys …)
    if keys_file is not None:
        append_key(keys_file, record)
        click.echo(f"added key {record.id} ({name}) to {keys_file}; the key above is shown "
                   "once and stored nowhere", file=terminal)
    else:
        click.echo("# its record for the keys file's `keys:` list (the hash, not the key):")
        click.echo(yaml.safe_dump([record.record()], sort_keys=False), nl=False)
