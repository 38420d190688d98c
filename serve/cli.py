"""``ccrec serve …``: run the Serve graph or the single-process app, write the OpenAPI docs."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path

import click

from features.cli import feast_options

log = logging.getLogger(__name__)

def _features(feast_env: str, root: Path, project: str | None, redis_url: str | None) -> dict:
    """The Ingress's feature source (:func:`serve.features.reader_from_config`)."""
    return {"source": "feast", "environment": feast_env, "root": str(root.resolve()),
            "project": project, "redis_url": redis_url}


@click.group()
def serve() -> None:
    """Online serving: the Ray Serve graph (Ingress → Sampler → Scorer) and its HTTP API."""


@serve.command("run")
@click.option("--bundle", required=True, help="Model bundle directory (ccrec train writes it).")
@feast_options
@click.option("--kafka", default=None, help="Bootstrap servers for POST /v1/events "
              "(default $KAFKA_BOOTSTRAP_SERVERS).")
@click.option("--port", default=8000, show_default=True, help="Serve proxy port.")
@click.option("--direct-port", default=8001, show_default=True,
              help="The Ingress replica's own HTTP port (Serve's direct ingress, fastest).")
@click.option("--address", default=None, help="Ray cluster address (default: start one).")
@click.option("--fast/--no-fast", default=True, show_default=True,
              help="Serve's fast request path (RAY_SERVE_THROUGHPUT_OPTIMIZED).")
def run_cmd(bundle: str, feast_env: str, root: Path, project: str | None,
            redis_url: str | None, kafka: str | None, port: int, direct_port: int,
            address: str | None, fast: bool) -> None:
    """Start Ray and the Serve graph from serve/serve_config.yaml; Ctrl-C stops."""
    import ray
    from ray import serve as ray_serve

    from serve import runtime

    if fast:
        runtime.apply_fast_path(direct_port)
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        ray_serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = runtime.serve_config(bundle=str(Path(bundle).resolve()), port=port,
                                      features=_features(feast_env, root, project, redis_url),
                                      kafka=kafka)
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
@click.option("--port", default=8000, show_default=True)
def plain_cmd(bundle: str, feast_env: str, root: Path, project: str | None,
              redis_url: str | None, port: int) -> None:
    """The same API in one process (uvicorn, no Ray): the latency baseline."""
    import uvicorn

    from serve.features import reader_from_config
    from serve.plain import PlainHost

    app = PlainHost(bundle, reader_from_config(_features(feast_env, root, project, redis_url))).app
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@serve.command("openapi")
@click.option("--out", default="docs/openapi.json", show_default=True)
def openapi_cmd(out: str) -> None:
    """Write the HTTP API's OpenAPI schema (the API reference)."""
    from serve.features import MemoryFeatures
    from serve.plain import PlainHost

    spec = PlainHost(None, MemoryFeatures()).app.openapi()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(spec, indent=2) + "\n")
    click.echo(out)
