"""One recommendation: features → Sampler (M1) → Scorer (VAE + M2), for both hosts.

The two model stages are plain objects with a *batched* method over typed
payloads, so that a Serve replica wraps them in ``@serve.batch`` and the
single-process host calls them directly:

* :class:`SamplerStage` — :meth:`CascadeRecommender.sample`: a
  :class:`Shortlist` (r_t with y^{M1} and the tail) for a warm user, and for a
  newcomer whose profile f_t is known when the bundle scores profiles (M2
  ranks by the VAE's profile embedding); the cold-start :class:`Ranked`
  popularity answer for any other user with no past category interaction;
* :class:`ScorerStage` — :meth:`CascadeRecommender.score`: the ranked top k.

:class:`Pipeline` runs one request through a host's three steps (a feature
reader and the two stages, behind deployment handles or called in-process)::

    Ingress ── SampleRequest ──▶ Sampler ── Shortlist | Ranked ──▶ Ingress
    Ingress ── ScoreRequest ───▶ Scorer ─── Ranked ─────────────▶ Ingress

Payloads are frozen dataclasses: built once, never changed between hops. A
response is computed by one bundle version end to end: the Shortlist names the
version that sampled it and the Scorer scores with that version
(:mod:`serve.runtime`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from ccrec.bundle import Candidates, CascadeRecommender, UserRequest
from features.reader import UNKNOWN, FeatureReader, Popularity, UserFeatures
from serve.metrics import Metrics
from serve.runtime import ModelSlots, ModelStatus, Served
from streaming.impressions import (
    IMPRESSIONS_TOPIC,
    Impression,
    ImpressionLog,
    impression_log_from_env,
    new_request_id,
)

log = logging.getLogger(__name__)


def configure_torch() -> None:
    """One intra-op thread per process: replicas share the cores, and these models are small."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


class ColdStart(StrEnum):
    """What answers a user with no past category interaction.

    ``profile``: the cascade on the user's profile f_t alone (M1's prior
    reranked by M2 with the VAE's profile embedding), when the feature store
    knows f_t and the bundle scores profiles
    (:attr:`ccrec.bundle.CascadeRecommender.scores_profiles`).
    ``popularity``: live category popularity from the feature store when it
    has counts, else the bundle's (M1 on an empty history).
    """

    PROFILE = "profile"
    POPULARITY = "popularity"


# --- payloads -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleRequest:
    """Ingress → Sampler.

    Args:
        user: δ_t and f_t; no item lists (M1 does not read them: a small hop).
        k: the length of the top-k list.
        exclude: category ids never to return.
        popularity: live category popularity, for the cold start.
    """

    user: UserRequest
    k: int
    exclude: tuple[str, ...] = ()
    popularity: Popularity | None = None


@dataclass(frozen=True)
class Shortlist:
    """Sampler → Ingress for a warm user.

    Args:
        version: the bundle that sampled; the Scorer scores with the same one.
        path: that bundle's directory, for a Scorer that does not hold it yet.
        candidates: r_t with y^{M1} and the tail, excluded categories removed.
    """

    version: str
    path: str
    candidates: Candidates


@dataclass(frozen=True)
class ScoreRequest:
    """Ingress → Scorer.

    Args:
        user: δ_t with its item lists, and f_t.
        shortlist: the Sampler's answer.
        k: the length of the top-k list.
    """

    user: UserRequest
    shortlist: Shortlist
    k: int


@dataclass(frozen=True)
class Ranked:
    """The answer (Scorer, or Sampler for a cold user) → Ingress.

    Args:
        version: the bundle that ranked.
        categories: category ids, best first.
        scores: M2's score (warm) or the prior (cold start) of each.
        cold_start: the prior used, None for a warm user.
    """

    version: str
    categories: list[str]
    scores: list[float]
    cold_start: ColdStart | None = None


@dataclass(frozen=True)
class Recommendation:
    """One answer, whichever host computed it.

    Args:
        user_id: the user.
        ranked: the categories, scores and model version.
        feature_timestamp: epoch seconds of the latest event the features include.
        features_unavailable: the feature store did not answer; ``ranked`` is the
            cold-start prior (the bundle's popularity), a fallback.
        request_id: unique per answer (the impression log's key).
    """

    user_id: str
    ranked: Ranked
    feature_timestamp: int | None
    features_unavailable: bool = False
    request_id: str = field(default_factory=new_request_id)


@dataclass(frozen=True)
class Readiness:
    """Whether the host can answer: a bundle in both stages and a feature store."""

    ready: bool
    model: ModelStatus
    features: bool


# --- the stages -----------------------------------------------------------------------------
class SamplerStage:
    """M1: a :class:`Shortlist` for warm users, the cold-start answer for cold ones.

    Args:
        slots: the stage's bundles; it samples with the current one.
    """

    def __init__(self, slots: ModelSlots) -> None:
        self.slots = slots

    async def __call__(self, request: SampleRequest) -> Shortlist | Ranked:
        """One request, called in this process (the single-process host)."""
        return self.sample_many([request])[0]

    def sample_many(self, requests: list[SampleRequest]) -> list[Shortlist | Ranked]:
        served = self.slots.current()
        rec = served.recommender
        cascade = [_cascade_answers(rec, r.user) for r in requests]
        warm = [r for r, c in zip(requests, cascade, strict=True) if c]
        sampled = iter(rec.sample([r.user for r in warm], [r.k for r in warm],
                                  [_indices(rec, r.exclude) for r in warm]) if warm else [])
        return [Shortlist(served.version, served.path, next(sampled)) if c
                else _cold_start(served, r) for r, c in zip(requests, cascade, strict=True)]


def _cascade_answers(rec: CascadeRecommender, user: UserRequest) -> bool:
    """Whether the cascade ranks for this user: a past, or a known profile that the
    bundle scores (:class:`ColdStart` ``profile``)."""
    return bool(user.past_categories) or (
        rec.scores_profiles and any(f > 0 for f in user.user_features or ()))


def _indices(rec: CascadeRecommender, names: tuple[str, ...]) -> set[int]:
    """Category ids → indices; ids the bundle does not know are ignored."""
    return {rec.category_index[n] for n in names if n in rec.category_index}


def _cold_start(served: Served, request: SampleRequest) -> Ranked:
    """The top k of the cold-start prior (see :class:`ColdStart`)."""
    rec = served.recommender
    prior = request.popularity.prior(rec.num_categories) if request.popularity else None
    prior = (prior if prior is not None else rec.popularity()).clone()  # [C+1]
    prior[0] = -torch.inf
    excluded = sorted(_indices(rec, request.exclude))
    prior[excluded] = -torch.inf
    top = prior.topk(min(request.k, rec.num_categories - len(excluded)))
    return Ranked(served.version, [rec.categories[c] for c in top.indices.tolist()],
                  top.values.tolist(), ColdStart.POPULARITY)


class ScorerStage:
    """VAE embeddings of the past category interactions + M2 over the candidates.

    Each request is scored by the bundle version that sampled it (its
    :class:`Shortlist`'s), loaded first if this stage does not hold it.

    Args:
        slots: the stage's bundles.
    """

    def __init__(self, slots: ModelSlots) -> None:
        self.slots = slots

    async def __call__(self, request: ScoreRequest) -> Ranked:
        """One request, called in this process (the single-process host)."""
        return (await self.score_many([request]))[0]

    async def score_many(self, requests: list[ScoreRequest]) -> list[Ranked]:
        by_version: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            by_version.setdefault(r.shortlist.version, []).append(i)
        out: list[Ranked | None] = [None] * len(requests)
        for version, rows in by_version.items():
            served = self.slots.held(version) or await asyncio.to_thread(
                self.slots.fetch, version, requests[rows[0]].shortlist.path)
            for i, ranked in zip(rows, _score(served, [requests[i] for i in rows]), strict=True):
                out[i] = ranked
        return out


def _score(served: Served, requests: list[ScoreRequest]) -> list[Ranked]:
    rec = served.recommender
    ranked = rec.score([r.user for r in requests],
                       [r.shortlist.candidates for r in requests], [r.k for r in requests])
    return [Ranked(served.version, [rec.categories[c] for c, _ in top], [s for _, s in top],
                   None if r.user.past_categories else ColdStart.PROFILE)
            for r, top in zip(requests, ranked, strict=True)]


# --- the pipeline ---------------------------------------------------------------------------
class Pipeline:
    """features → sample → score for one request, with a host's three steps.

    Args:
        features: the online feature reader (a blocking one is read in a thread).
        sample: the Sampler stage on one request.
        score: the Scorer stage on one request.
        status: the model status of both stages.
    """

    def __init__(self, features: FeatureReader,
                 sample: Callable[[SampleRequest], Awaitable[Shortlist | Ranked]],
                 score: Callable[[ScoreRequest], Awaitable[Ranked]],
                 status: Callable[[], Awaitable[ModelStatus]]) -> None:
        self.features = features
        self.sample, self.score, self.status = sample, score, status
        self.metrics = Metrics()
        self.impressions: ImpressionLog | None = None

    def log_impressions(self, bootstrap_servers: str | None, enabled: bool = True,
                        topic: str = IMPRESSIONS_TOPIC) -> None:
        """(Re)start the impression log of every answer (:mod:`streaming.impressions`),
        or stop it (``enabled`` False, or no brokers)."""
        if self.impressions is not None:
            self.impressions.close(timeout=1.0)
        counter = self.metrics.impressions
        self.impressions = impression_log_from_env(
            bootstrap_servers, enabled, lambda outcome, n: counter.labels(outcome).inc(n),
            topic=topic)

    def _served(self, rec: Recommendation) -> Recommendation:
        """An answer about to be returned: into the impression log (never waits)."""
        if self.impressions is not None:
            r = rec.ranked
            self.impressions.offer(Impression(rec.request_id, rec.user_id, r.version,
                                              r.categories, r.scores, rec.feature_timestamp,
                                              fallback=rec.features_unavailable))
        return rec

    async def read_features(self, user_id: str) -> UserFeatures:
        if getattr(self.features, "in_memory", False):
            return self.features.read_many([user_id])[0]
        return (await asyncio.to_thread(self.features.read_many, [user_id]))[0]

    async def recommend(self, user_id: str, k: int, exclude: list[str]) -> Recommendation:
        latency = self.metrics.stage_latency
        t0 = time.perf_counter()
        try:
            feats = await self.read_features(user_id)
        except Exception:  # the online store is down: a flagged popularity answer, not a 500
            log.exception("feature store read failed")
            self.metrics.feature_errors.inc()
            ranked = await self.sample(SampleRequest(UNKNOWN.user, k, tuple(exclude)))
            return self._served(Recommendation(user_id, ranked, None, features_unavailable=True))
        t1 = time.perf_counter()
        latency.labels("features").observe(t1 - t0)
        if feats.last_timestamp:
            self.metrics.feature_age.observe(max(0.0, time.time() - feats.last_timestamp))
        user = feats.user
        sampled = await self.sample(SampleRequest(
            UserRequest(user.past_categories, None, user.user_features), k, tuple(exclude),
            feats.popularity))
        t2 = time.perf_counter()
        latency.labels("sampler").observe(t2 - t1)
        if isinstance(sampled, Shortlist):
            ranked = await self.score(ScoreRequest(user, sampled, k))
            latency.labels("scorer").observe(time.perf_counter() - t2)
        else:
            ranked = sampled
        self.metrics.recommendations.labels(ranked.cold_start or "warm").inc()
        self.metrics.set_model_version(ranked.version)
        return self._served(Recommendation(user_id, ranked, feats.last_timestamp or None))

    async def ready(self) -> Readiness:
        try:
            model = await self.status()
        except Exception:  # a stage that does not answer is not ready
            log.exception("a model stage did not answer the status call")
            model = ModelStatus(False, None, "a model stage does not answer")
        try:
            features = await asyncio.to_thread(self.features.ping)
        except Exception:
            features = False
        return Readiness(model.ready and features, model, features)
