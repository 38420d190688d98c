"""The Ray Serve application: Ingress (HTTP + features) → Sampler (M1) → Scorer (VAE + M2).

One deployment per stage, child handles passed as constructor arguments,
``app`` at the bottom (``serve run serve.deployments:app``). The feature read
runs inside the Ingress (an I/O call to the online store, which a separate
deployment would only wrap in another hop). Sampler and Scorer are separate
deployments — they scale differently — and ``@serve.batch`` groups concurrent
requests into one torch call each.

The deployment options here (autoscaling, concurrency, CPUs) are the only
ones; a Serve config file (``serve/serve_config.yaml`` on one machine,
``deploy/serve/serve_config.yaml`` on a cluster) sets what an environment
changes: ``user_config`` and, on a cluster, the CPUs of a stage replica.

Everything that changes at run time is ``user_config``, applied in place by
``reconfigure`` (no replica restart): the bundle path of both stages (hot
reload), the batching knobs, the Ingress's feature source and broker.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from features.reader import MemoryFeatures, reader_from_config
from serve.api import Clicks, create_app
from serve.auth import Authenticator
from serve.pipeline import (
    Pipeline,
    Ranked,
    SampleRequest,
    SamplerStage,
    ScoreRequest,
    ScorerStage,
    Shortlist,
    configure_torch,
)
from serve.runtime import ModelSlots, ModelStatus

#: Replicas follow the requests in flight: a stage replica is one torch thread.
STAGE_AUTOSCALING = {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 8,
                     "upscale_delay_s": 10, "downscale_delay_s": 120}
INGRESS_AUTOSCALING = {**STAGE_AUTOSCALING, "max_replicas": 4, "target_ongoing_requests": 16}
#: Fractional CPUs: the three deployments fit on one 2-core machine beside a client.
REPLICA_CPUS = {"num_cpus": 0.3}


class _Stage:
    """What Sampler and Scorer share: the bundles by version and in-place reconfiguration.

    user_config: ``bundle`` (a bundle directory, or a symlink to one that the
    stage follows), ``max_batch_size``, ``batch_wait_timeout_s``.
    """

    def __init__(self) -> None:
        configure_torch()
        self.slots = ModelSlots()
        self.batched: Any = None  # the @serve.batch method, set by the subclass

    async def reconfigure(self, config: dict[str, Any]) -> None:
        if config.get("bundle"):
            # Loading in a thread keeps the replica answering with the old bundle meanwhile.
            await asyncio.to_thread(self.slots.configure, config["bundle"])
        if "max_batch_size" in config:
            self.batched.set_max_batch_size(int(config["max_batch_size"]))
        if "batch_wait_timeout_s" in config:
            self.batched.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))

    def status(self) -> ModelStatus:
        return self.slots.status()


@serve.deployment(name="Sampler", ray_actor_options=REPLICA_CPUS, max_ongoing_requests=64,
                  autoscaling_config=STAGE_AUTOSCALING)
class Sampler(_Stage):
    """M1: a shortlist (r_t, y^{M1}, the tail), or the cold-start answer."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = SamplerStage(self.slots)
        self.batched = self.sample

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def sample(self, requests: list[SampleRequest]) -> list[Shortlist | Ranked]:
        return self.stage.sample_many(requests)


@serve.deployment(name="Scorer", ray_actor_options=REPLICA_CPUS, max_ongoing_requests=64,
                  autoscaling_config=STAGE_AUTOSCALING)
class Scorer(_Stage):
    """VAE embeddings of the past category interactions + M2 over the shortlist."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = ScorerStage(self.slots)
        self.batched = self.score

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def score(self, requests: list[ScoreRequest]) -> list[Ranked]:
        return await self.stage.score_many(requests)


@serve.deployment(name="Ingress", ray_actor_options=REPLICA_CPUS, max_ongoing_requests=128,
                  autoscaling_config=INGRESS_AUTOSCALING,
                  user_config={"features": {"source": "feast"}})
@serve.ingress()
class Ingress:
    """HTTP (FastAPI) and the online feature read; calls Sampler, then Scorer.

    user_config: ``features`` (see :func:`features.reader.reader_from_config`;
    default the Feast store in ``features/``) and ``kafka`` (bootstrap servers
    for POST /v1/events; default ``$KAFKA_BOOTSTRAP_SERVERS``), ``impressions``
    (default true: every answer to the impression log on those brokers,
    :mod:`streaming.impressions`). API keys come
    from the replica's environment (:meth:`serve.auth.Authenticator.from_env`):
    a replica without them does not start.

    Args:
        sampler: handle to :class:`Sampler`.
        scorer: handle to :class:`Scorer`.
    """

    def __init__(self, sampler: DeploymentHandle, scorer: DeploymentHandle) -> None:
        self.sampler, self.scorer = sampler, scorer
        self.pipeline = Pipeline(MemoryFeatures(), sampler.sample.remote, scorer.score.remote,
                                 self.status)
        self.clicks = Clicks()
        self.auth = Authenticator.from_env()
        self.features_config: dict[str, Any] | None = None
        self.impressions_config: tuple[bool, str | None] | None = None

    def reconfigure(self, config: dict[str, Any]) -> None:
        features = config.get("features") or {"source": "feast"}
        if features != self.features_config:
            self.pipeline.features = reader_from_config(features)
            self.features_config = features
        kafka = config.get("kafka")
        if kafka and kafka != self.clicks.bootstrap_servers:
            self.clicks.close()
            self.clicks.bootstrap_servers = kafka
        impressions = (bool(config.get("impressions", True)), self.clicks.bootstrap_servers)
        if impressions != self.impressions_config:
            self.pipeline.log_impressions(self.clicks.bootstrap_servers, impressions[0])
            self.impressions_config = impressions

    async def status(self) -> ModelStatus:
        sampler, scorer = await asyncio.gather(self.sampler.status.remote(),
                                               self.scorer.status.remote())
        return ModelStatus.combine(sampler, scorer)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.pipeline, self.clicks, self.auth, title="CCRec")


app = Ingress.bind(Sampler.bind(), Scorer.bind())
