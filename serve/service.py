"""The request pipeline shared by both hosts: features → sampler → scorer.

:class:`RecommendService` runs one recommendation through three awaitables
that a host supplies — the Serve Ingress (handles to the Sampler and Scorer
deployments) or the single-process app (direct calls into :mod:`serve.core`).
The HTTP layer (:mod:`serve.api`) only sees this class.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

from ccrec.schema import Event
from serve.core import ModelNotReady, Recommendation
from serve.events import EventPublisher
from serve.features import FeatureReader, UserFeatures
from serve.metrics import Metrics


class RecommendService(ABC):
    """One host's implementation of the API.

    Args:
        features: the online feature reader.
        publisher: where POST /v1/events goes.
    """

    def __init__(self, features: FeatureReader, publisher: EventPublisher | None = None) -> None:
        self.features = features
        self.publisher = publisher or EventPublisher()
        self.metrics = Metrics()

    # --- what a host supplies ---------------------------------------------------------------
    @abstractmethod
    async def read_features(self, user_id: str) -> UserFeatures:
        """The user's online features."""

    @abstractmethod
    async def sample(self, request: dict[str, Any]) -> dict[str, Any]:
        """The Sampler stage on one request (see :mod:`serve.core` for payloads)."""

    @abstractmethod
    async def score(self, request: dict[str, Any]) -> dict[str, Any]:
        """The Scorer stage on one request."""

    @abstractmethod
    async def model_status(self) -> dict[str, Any]:
        """{"ready": bool, "version": str | None, "error": str | None} of both stages."""

    async def features_ready(self) -> bool:
        import asyncio

        return await asyncio.to_thread(self.features.ping)

    # --- the pipeline ---------------------------------------------------------------------
    async def recommend(self, user_id: str, k: int, exclude: list[str]) -> Recommendation:
        stage = self.metrics.stage_latency
        t0 = time.perf_counter()
        feats = await self.read_features(user_id)
        t1 = time.perf_counter()
        stage.labels("features").observe(t1 - t0)
        if feats.last_timestamp:
            self.metrics.feature_age.observe(max(0.0, time.time() - feats.last_timestamp))
        request = {"past": feats.past_categories, "features": feats.user_features, "k": k,
                   "exclude": exclude}
        if not feats.past_categories and any(feats.popular_counts):
            request["popular"] = [feats.popular_categories, feats.popular_counts]
        sampled = await self.sample(request)  # M1 needs no item sets: keep the hop small
        t2 = time.perf_counter()
        stage.labels("sampler").observe(t2 - t1)
        timings = {"features_ms": (t1 - t0) * 1e3, "sampler_ms": (t2 - t1) * 1e3}
        if "cold" in sampled:
            ranked, kind = sampled, sampled["cold"]
        else:
            request["items"] = feats.past_items
            for key in ("candidates", "m1", "tail", "tail_m1"):
                request[key] = sampled[key]
            ranked, kind = await self.score(request), None
            t3 = time.perf_counter()
            stage.labels("scorer").observe(t3 - t2)
            timings["scorer_ms"] = (t3 - t2) * 1e3
        self.metrics.recommendations.labels(kind or "warm").inc()
        self.metrics.set_model_version(ranked["version"])
        return Recommendation(
            user_id=user_id, categories=ranked["categories"], scores=ranked["scores"],
            model_version=ranked["version"], feature_timestamp=feats.last_timestamp or None,
            cold_start=kind, timings=timings,
        )

    async def ready(self) -> dict[str, Any]:
        try:
            model = await self.model_status()
        except Exception as exc:
            model = {"ready": False, "version": None, "error": f"{type(exc).__name__}: {exc}"}
        try:
            features = await self.features_ready()
        except Exception:
            features = False
        return {"ready": bool(model["ready"] and features), "model": model,
                "features": features}

    async def publish(self, event: Event) -> dict[str, Any]:
        result = await self.publisher.publish(event)
        self.metrics.events.inc()
        return result


__all__ = ["ModelNotReady", "RecommendService"]
