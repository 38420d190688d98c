"""The Ray Serve graph: Ingress (HTTP + features) → Sampler (M1) → Scorer (VAE + M2).

One deployment per stage, child handles passed as constructor arguments.
The Features read runs inside the Ingress process (one handle hop fewer: it
is an I/O call to the online store, which a separate deployment would only
wrap in another hop). Sampler and Scorer are separate deployments — they
scale differently — and ``@serve.batch`` groups concurrent requests into one
torch call each.

Everything that changes at run time is ``user_config`` (applied in place by
``reconfigure``, no replica restart): the bundle path of both stages (hot
reload), the batching knobs, and the Ingress's feature source.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve.api import create_app
from serve.core import ModelSlot, SamplerStage, ScorerStage, configure_torch
from serve.events import EventPublisher
from serve.features import FeatureReader, UserFeatures, reader_from_config
from serve.service import RecommendService

log = logging.getLogger(__name__)

AUTOSCALING = {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 2,
               "target_ongoing_requests": 16, "upscale_delay_s": 5, "downscale_delay_s": 60}


class _Stage:
    """What Sampler and Scorer share: the bundle slot and in-place reconfiguration."""

    def __init__(self) -> None:
        configure_torch()
        self.slot = ModelSlot()

    async def reconfigure(self, config: dict[str, Any]) -> None:
        bundle = config.get("bundle")
        if bundle:
            # Loading in a thread keeps the replica answering with the old bundle meanwhile.
            await asyncio.to_thread(self.slot.load, bundle)
        batcher = getattr(self, "_batched", None)
        if batcher is not None and "max_batch_size" in config:
            batcher.set_max_batch_size(int(config["max_batch_size"]))
        if batcher is not None and "batch_wait_timeout_s" in config:
            batcher.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))

    def status(self) -> dict[str, Any]:
        return {"ready": self.slot.model is not None, "version": self.slot.version,
                "error": self.slot.error, "bundle": self.slot.path}


@serve.deployment(
    name="Sampler", ray_actor_options={"num_cpus": 0.3}, max_ongoing_requests=64,
    autoscaling_config=AUTOSCALING, user_config={"bundle": None},
)
class Sampler(_Stage):
    """M1: candidates r_t with probabilities, or the cold-start answer."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = SamplerStage(self.slot)
        self._batched = self.sample

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def sample(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.stage.sample_many(requests)


@serve.deployment(
    name="Scorer", ray_actor_options={"num_cpus": 0.3}, max_ongoing_requests=64,
    autoscaling_config=AUTOSCALING, user_config={"bundle": None},
)
class Scorer(_Stage):
    """VAE embeddings of the past category interactions + M2 over the candidates."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = ScorerStage(self.slot)
        self._batched = self.score

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def score(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.stage.score_many(requests)


class GraphService(RecommendService):
    """The pipeline with the Sampler and Scorer behind deployment handles."""

    def __init__(self, sampler: DeploymentHandle, scorer: DeploymentHandle,
                 features: FeatureReader) -> None:
        super().__init__(features)
        self.sampler, self.scorer = sampler, scorer
        self.blocking_features = not getattr(features, "in_memory", False)

    async def read_features(self, user_id: str) -> UserFeatures:
        if self.blocking_features:
            return (await asyncio.to_thread(self.features.read_many, [user_id]))[0]
        return self.features.read_many([user_id])[0]

    async def sample(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.sampler.sample.remote(request)

    async def score(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.scorer.score.remote(request)

    async def model_status(self) -> dict[str, Any]:
        sampler, scorer = await asyncio.gather(self.sampler.status.remote(),
                                               self.scorer.status.remote())
        return {"ready": sampler["ready"] and scorer["ready"],
                "version": scorer["version"] if sampler["version"] == scorer["version"] else
                f"{sampler['version']}/{scorer['version']}",
                "error": sampler["error"] or scorer["error"]}


@serve.deployment(
    name="Ingress", ray_actor_options={"num_cpus": 0.3}, max_ongoing_requests=128,
    autoscaling_config=AUTOSCALING, user_config={"features": {"source": "feast"}},
)
@serve.ingress()
class Ingress:
    """HTTP (FastAPI) + the online feature read; calls Sampler then Scorer.

    Args:
        sampler: handle to :class:`Sampler`.
        scorer: handle to :class:`Scorer`.
    """

    def __init__(self, sampler: DeploymentHandle, scorer: DeploymentHandle) -> None:
        from serve.features import MemoryFeatures

        self.service = GraphService(sampler, scorer, MemoryFeatures())
        self._features_config: dict | None = None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """user_config: ``features`` (see :func:`serve.features.reader_from_config`) and
        ``kafka`` (bootstrap servers for POST /v1/events; default $KAFKA_BOOTSTRAP_SERVERS)."""
        features = config.get("features") or {"source": "feast"}
        if features != self._features_config:
            reader = reader_from_config(features)
            self.service.features = reader
            self.service.blocking_features = not getattr(reader, "in_memory", False)
            self._features_config = features
        kafka = config.get("kafka")
        if kafka and kafka != self.service.publisher.bootstrap_servers:
            self.service.publisher.close()
            self.service.publisher = EventPublisher(kafka)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.service, title="CCRec")
