"""The single-process host: the same API, pipeline and stages, no Ray.

``uvicorn`` runs :class:`PlainHost`'s app in one process; the stages are
called directly, so this is the floor the Serve graph is measured against.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI

from features.reader import FeatureReader, reader_from_config
from serve.api import Clicks, create_app
from serve.auth import Authenticator
from serve.pipeline import Pipeline, SamplerStage, ScorerStage, configure_torch
from serve.runtime import ModelSlots, ModelStatus, free_port
from streaming.impressions import enabled_in_env


class PlainHost:
    """Features, Sampler and Scorer in this process, behind the HTTP API.

    Args:
        bundle: the model bundle directory, or a symlink to one that the host
            follows (None: not ready until ``slots.load``).
        features: the feature reader.
        clicks: where POST /v1/events goes (default: ``$KAFKA_BOOTSTRAP_SERVERS``).
        auth: the API keys (default: :meth:`serve.auth.Authenticator.from_env`).
        impressions: log every answer to Kafka through the clicks' brokers
            (:mod:`streaming.impressions`; default ``$CCREC_IMPRESSIONS``, on).
    """

    def __init__(self, bundle: str | Path | None, features: FeatureReader,
                 clicks: Clicks | None = None, auth: Authenticator | None = None,
                 impressions: bool | None = None) -> None:
        configure_torch()
        self.slots = ModelSlots(bundle)
        self.pipeline = Pipeline(features, SamplerStage(self.slots), ScorerStage(self.slots),
                                 self._status)
        clicks = clicks or Clicks()
        self.app = create_app(self.pipeline, clicks, auth or Authenticator.from_env(),
                              title="CCRec (single process)")
        self.pipeline.log_impressions(
            clicks.bootstrap_servers, enabled_in_env() if impressions is None else impressions)

    async def _status(self) -> ModelStatus:
        return self.slots.status()


def from_env() -> FastAPI:
    """``uvicorn --factory serve.plain:from_env``: bundle from ``$CCREC_BUNDLE``, features
    from ``$CCREC_FEATURES`` (JSON, see :func:`features.reader.reader_from_config`)."""
    features = json.loads(os.environ.get("CCREC_FEATURES", '{"source": "feast"}'))
    return PlainHost(os.environ.get("CCREC_BUNDLE"), reader_from_config(features)).app


@contextlib.contextmanager
def serving(app: FastAPI, port: int | None = None,
            timeout: float = 60.0) -> Iterator[str]:
    """``app`` served by uvicorn on 127.0.0.1 from a thread of this process (an embedding
    service, a benchmark, a test); yields its URL once it listens, and stops it on exit."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="error", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True, name=f"uvicorn:{port}")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"uvicorn did not start on port {port} within {timeout:.0f}s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
