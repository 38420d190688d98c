"""One recommendation: features → Sampler (M1) → Scorer (VAE + M2), for both hosts.

The two model stages are plain objects with a *batched* method over typed
payloads, so that a Serve replica wraps them in ``@serve.batch`` and the
single-process host calls them directly:

* :class:`SamplerStage` — :meth:`CascadeRecommender.sample`: a
  :class:`Shortlist` (r_t with y^{M1} and the tail) for a warm user, the
  cold-start :class:`Ranked` answer for a user with no past category interaction;
* :class:`ScorerStage` — :meth:`CascadeRecommender.score`: the ranked top k.

:class:`Pipeline` runs one request through a host's three steps (a feature
reader and the two stages, behind deployment handles or called in-process)::

    Ingress ── SampleRequest ──▶ Sampler ── Shortlist | Ranked ──▶ Ingress
    Ingress ── ScoreRequest ───▶ Scorer ─── Ranked ─────────────▶ Ingress

Payloads are frozen dataclasses: built once, never changed between hops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import torch

from ccrec.bundle import Bundle, Candidates, CascadeRecommender, UserRequest
from serve.features import FeatureReader, Popularity, UserFeatures
from serve.metrics import Metrics

log = logging.getLogger(__name__)


def configure_torch() -> None:
    """One intra-op thread per process: replicas share the cores, and these models are small."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


class ColdStart(StrEnum):
    """The prior that answers a user with no past category interaction.

    ``popularity``: live category popularity from the feature store when it
    has counts, else the bundle's (M1 on an empty history).
    """

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
        version: the bundle that sampled.
        candidates: r_t with y^{M1} and the tail, excluded categories removed.
    """

    version: str
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
class ModelStatus:
    """A stage's bundle (or both stages', :meth:`combine`).

    Args:
        ready: a bundle is loaded.
        version: its version id.
        error: why the last load failed, if it did.
    """

    ready: bool
    version: str | None
    error: str | None = None

    @staticmethod
    def combine(sampler: ModelStatus, scorer: ModelStatus) -> ModelStatus:
        version = sampler.version if sampler.version == scorer.version else \
            f"{sampler.version}/{scorer.version}"
        return ModelStatus(sampler.ready and scorer.ready, version,
                           sampler.error or scorer.error)


@dataclass(frozen=True)
class Recommendation:
    """One answer, whichever host computed it.

    Args:
        user_id: the user.
        ranked: the categories, scores and model version.
        feature_timestamp: epoch seconds of the latest event the features include.
    """

    user_id: str
    ranked: Ranked
    feature_timestamp: int | None


@dataclass(frozen=True)
class Readiness:
    """Whether the host can answer: a bundle in both stages and a feature store."""

    ready: bool
    model: ModelStatus
    features: bool


# --- the served bundle ----------------------------------------------------------------------
class ModelNotReady(RuntimeError):
    """No bundle is loaded yet (the API answers 503)."""


@dataclass(frozen=True)
class Served:
    """A loaded bundle: swapped as one object, so a request sees one version throughout."""

    recommender: CascadeRecommender
    version: str
    path: str


class ModelSlot:
    """The currently served bundle; :meth:`load` swaps it atomically.

    Args:
        path: a bundle directory to load now, or None to start empty (not ready).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self.served: Served | None = None
        self.error: str | None = None
        if path:
            self.load(path)

    def load(self, path: str | Path) -> bool:
        """Load ``path`` unless it is served already; keep serving the old one on failure."""
        path = str(path)
        if self.served is not None and self.served.path == path:
            return True
        try:
            bundle = Bundle.load(path)
        except Exception as exc:  # a missing or broken bundle must not stop the replica
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("bundle %s not loaded: %s", path, self.error)
            return False
        with self._lock:
            self.served, self.error = Served(bundle.recommender(), bundle.version, path), None
        log.info("serving bundle %s (version %s)", path, bundle.version)
        return True

    def status(self) -> ModelStatus:
        served = self.served
        return ModelStatus(served is not None, served.version if served else None, self.error)

    def require(self) -> Served:
        served = self.served
        if served is None:
            raise ModelNotReady(self.error or "no model bundle loaded")
        return served


# --- the stages -----------------------------------------------------------------------------
class SamplerStage:
    """M1: a :class:`Shortlist` for warm users, the cold-start answer for cold ones.

    Args:
        slot: the served bundle.
    """

    def __init__(self, slot: ModelSlot) -> None:
        self.slot = slot

    async def __call__(self, request: SampleRequest) -> Shortlist | Ranked:
        """One request, called in this process (the single-process host)."""
        return self.sample_many([request])[0]

    def sample_many(self, requests: list[SampleRequest]) -> list[Shortlist | Ranked]:
        served = self.slot.require()
        rec = served.recommender
        warm = [r for r in requests if r.user.past_categories]
        sampled = iter(rec.sample([r.user for r in warm], [r.k for r in warm],
                                  [_indices(rec, r.exclude) for r in warm]) if warm else [])
        return [Shortlist(served.version, next(sampled)) if r.user.past_categories
                else _cold_start(served, r) for r in requests]


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

    Args:
        slot: the served bundle.
    """

    def __init__(self, slot: ModelSlot) -> None:
        self.slot = slot

    async def __call__(self, request: ScoreRequest) -> Ranked:
        """One request, called in this process (the single-process host)."""
        return self.score_many([request])[0]

    def score_many(self, requests: list[ScoreRequest]) -> list[Ranked]:
        served = self.slot.require()
        rec = served.recommender
        ranked = rec.score([r.user for r in requests],
                           [r.shortlist.candidates for r in requests], [r.k for r in requests])
        return [Ranked(served.version, [rec.categories[c] for c, _ in top], [s for _, s in top])
                for top in ranked]


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

    async def read_features(self, user_id: str) -> UserFeatures:
        if getattr(self.features, "in_memory", False):
            return self.features.read_many([user_id])[0]
        return (await asyncio.to_thread(self.features.read_many, [user_id]))[0]

    async def recommend(self, user_id: str, k: int, exclude: list[str]) -> Recommendation:
        latency = self.metrics.stage_latency
        t0 = time.perf_counter()
        feats = await self.read_features(user_id)
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
        return Recommendation(user_id, ranked, feats.last_timestamp or None)

    async def ready(self) -> Readiness:
        try:
            model = await self.status()
        except Exception as exc:  # a stage that does not answer is not ready
            model = ModelStatus(False, None, f"{type(exc).__name__}: {exc}")
        try:
            features = await asyncio.to_thread(self.features.ping)
        except Exception:
            features = False
        return Readiness(model.ready and features, model, features)
