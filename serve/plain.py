"""The single-process host: the same API and stages, no Ray (benchmark control, tests).

``uvicorn`` runs :func:`build_app`'s app in one process; the stages are called
directly, so this is the floor the Serve graph is measured against.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from serve.api import create_app
from serve.core import ModelSlot, SamplerStage, ScorerStage, configure_torch
from serve.events import EventPublisher
from serve.features import FeatureReader, UserFeatures
from serve.service import RecommendService


class LocalService(RecommendService):
    """Features, Sampler and Scorer in this process.

    Args:
        bundle: the model bundle directory (None: not ready until :meth:`load`).
        features: the feature reader.
        publisher: where clicks go.
        threaded_features: read features in a worker thread (a blocking store).
    """

    def __init__(self, bundle: str | Path | None, features: FeatureReader,
                 publisher: EventPublisher | None = None, threaded_features: bool = True) -> None:
        super().__init__(features, publisher)
        configure_torch()
        self.slot = ModelSlot(bundle)
        self.sampler = SamplerStage(self.slot)
        self.scorer = ScorerStage(self.slot)
        self.threaded_features = threaded_features and not getattr(features, "in_memory", False)

    def load(self, bundle: str | Path) -> bool:
        return self.slot.load(bundle)

    async def read_features(self, user_id: str) -> UserFeatures:
        if self.threaded_features:
            return (await asyncio.to_thread(self.features.read_many, [user_id]))[0]
        return self.features.read_many([user_id])[0]

    async def sample(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.sampler.sample_many([request])[0]

    async def score(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.scorer.score_many([request])[0]

    async def model_status(self) -> dict[str, Any]:
        return {"ready": self.slot.model is not None, "version": self.slot.version,
                "error": self.slot.error}


def build_app(bundle: str | Path | None, features: FeatureReader,
              publisher: EventPublisher | None = None) -> FastAPI:
    """The single-process FastAPI app."""
    return create_app(LocalService(bundle, features, publisher), title="CCRec (single process)")


def from_env() -> FastAPI:
    """``uvicorn --factory serve.plain:from_env``: bundle from ``$CCREC_BUNDLE``, features
    from ``$CCREC_FEATURES`` (JSON, see :func:`serve.features.reader_from_config`)."""
    import json
    import os

    from serve.features import reader_from_config

    features = json.loads(os.environ.get("CCREC_FEATURES", '{"source": "feast"}'))
    return build_app(os.environ.get("CCREC_BUNDLE"), reader_from_config(features))
