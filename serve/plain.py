"""The single-process host: the same API, pipeline and stages, no Ray.

``uvicorn`` runs :class:`PlainHost`'s app in one process; the stages are
called directly, so this is the floor the Serve graph is measured against.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI

from features.reader import FeatureReader, reader_from_config
from serve.api import Clicks, create_app
from serve.auth import Authenticator
from serve.pipeline import Pipeline, SamplerStage, ScorerStage, configure_torch
from serve.runtime import ModelSlots, ModelStatus
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
