"""The one recommendation core, hosted twice: by the Ray Serve deployments and
by the single-process FastAPI app (:mod:`serve.plain`).

Each stage is a plain object with a *batched* method over small, picklable
payloads (dicts of int/float lists, no pandas), so that a Serve replica can
wrap it in ``@serve.batch`` and the single-process app can call it directly:

* :class:`SamplerStage` — M1: candidates r_t with their probabilities, or the
  cold-start answer (popularity, or the f_t profile prior) for a user with no
  past category interactions;
* :class:`ScorerStage` — VAE embeddings + M2: scores the candidates and ranks
  the top k.

:class:`ModelSlot` holds the loaded bundle and swaps it atomically on reload.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from serve.model import ServingModel, load_model

log = logging.getLogger(__name__)

#: Longest past sequence the stages feed to the models (the most recent are kept).
MAX_PAST = 50

# Payloads between the stages (plain dicts: cheap to pickle, no schema drift):
#   SampleRequest {"past": [int], "items": [[int]], "features": [int], "k": int,
#                  "exclude": [str]}
#   SampleResult  {"version": str, "candidates": [int], "m1": [float],
#                  "tail": [int], "tail_m1": [float]}                         (warm user)
#               | {"version": str, "cold": "popularity"|"profile",
#                  "categories": [str], "scores": [float]}                    (cold user)
#   ScoreRequest  SampleRequest + SampleResult's candidates, m1, tail, tail_m1
#   Ranked        {"version": str, "categories": [str], "scores": [float]}


def configure_torch() -> None:
    """One intra-op thread per process: replicas share 2 cores, and these models are tiny."""
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


class ModelSlot:
    """The currently served bundle; :meth:`load` swaps it atomically.

    Args:
        path: a bundle directory to load now, or None to start empty (not ready).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self.model: ServingModel | None = None
        self.path: str | None = None
        self.error: str | None = None
        if path:
            self.load(path)

    def load(self, path: str | Path) -> bool:
        """Load ``path`` if it differs from the current one; keep serving the old on failure."""
        path = str(path)
        if self.model is not None and path == self.path:
            return True
        try:
            model = load_model(path)
        except Exception as exc:  # a missing or broken bundle must not kill the replica
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("bundle %s not loaded: %s", path, self.error)
            return False
        with self._lock:
            self.model, self.path, self.error = model, path, None
        log.info("serving bundle %s (version %s)", path, model.version)
        return True

    @property
    def version(self) -> str | None:
        return self.model.version if self.model is not None else None

    def require(self) -> ServingModel:
        model = self.model
        if model is None:
            raise ModelNotReady(self.error or "no model bundle loaded")
        return model


class ModelNotReady(RuntimeError):
    """No bundle is loaded yet (the service answers 503)."""


def _pad(rows: list[list[int]], width: int | None = None) -> torch.Tensor:
    width = max(1, width or max((len(r) for r in rows), default=1))
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.as_tensor(row[:width], dtype=torch.long)
    return out


def _recent(req: dict[str, Any], limit: int) -> tuple[list[int], list[list[int]]]:
    past, items = req["past"][-limit:], req.get("items") or []
    return past, (items[-len(past):] if past and items else [])


def _limit(model: ServingModel) -> int:
    return int(getattr(model, "max_past", MAX_PAST))


@dataclass
class SamplerStage:
    """M1: candidates r_t with probabilities for warm users, the cold-start answer for cold ones.

    A warm answer also carries a *tail*: the next categories in M1's order, so a
    request for more categories than |r_t| is still filled (as
    :meth:`ccrec.models.cascade.CCRec.score_tensors` ranks them: after the
    candidates, by M1 probability − 1).

    Args:
        slot: the served bundle.
    """

    slot: ModelSlot

    @torch.inference_mode()
    def sample_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model = self.slot.require()
        limit = _limit(model)
        out: list[dict[str, Any] | None] = [None] * len(requests)
        warm = [i for i, r in enumerate(requests) if r["past"]]
        for i, req in enumerate(requests):
            if not req["past"]:
                out[i] = self._cold(model, req)
        if warm:
            past = _pad([_recent(requests[i], limit)[0] for i in warm])
            logp = model.sample(past).clone()  # [B, C+1]
            cands, m1 = model.candidates(logp, past)  # [B, R]
            logp[:, 0] = float("-inf")
            for row, i in enumerate(warm):
                req = requests[i]
                excluded = set(_indices(model, req.get("exclude", ())))
                keep = [(int(c), float(p)) for c, p in zip(cands[row].tolist(),
                                                            m1[row].tolist(), strict=True)
                        if c and c not in excluded]
                blocked = list(excluded | {c for c, _ in keep})
                rest = logp[row].clone()
                rest[blocked] = float("-inf")
                n = min(req["k"], model.num_categories - len(blocked))
                tail = torch.topk(rest, max(n, 0))
                out[i] = {"version": model.version, "candidates": [c for c, _ in keep],
                          "m1": [p for _, p in keep], "tail": tail.indices.tolist(),
                          "tail_m1": tail.values.exp().tolist()}
        return out  # type: ignore[return-value]

    @staticmethod
    def _cold(model: ServingModel, req: dict[str, Any]) -> dict[str, Any]:
        features = [f for f in req.get("features", []) if f]
        prior = model.profile_prior(torch.as_tensor(features)) if features else None
        kind = "profile" if prior is not None else "popularity"
        if prior is None and req.get("popular"):  # live popularity from the feature store
            cats, counts = req["popular"]
            prior = torch.zeros(model.num_categories + 1)
            ok = [(c, n) for c, n in zip(cats, counts, strict=False)
                  if 0 < c <= model.num_categories]
            if ok:
                prior[[c for c, _ in ok]] = torch.tensor([float(n) for _, n in ok])
                prior = prior / prior.sum()
            else:
                prior = None
        prior = (prior if prior is not None else model.popularity()).clone()
        prior[0] = float("-inf")
        excluded = _indices(model, req.get("exclude", ()))
        if excluded:
            prior[excluded] = float("-inf")
        n = min(req["k"], model.num_categories - len(excluded))
        top = torch.topk(prior, max(n, 0))
        return {"version": model.version, "cold": kind,
                "categories": [model.category_name(int(c)) for c in top.indices],
                "scores": top.values.tolist()}


@dataclass
class ScorerStage:
    """VAE embeddings of the past category interactions + M2 over the candidates.

    Args:
        slot: the served bundle.
    """

    slot: ModelSlot

    @torch.inference_mode()
    def score_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model = self.slot.require()
        limit = _limit(model)
        recent = [_recent(r, limit) for r in requests]
        past = _pad([p for p, _ in recent])
        items = [i for _, i in recent]
        features = _pad([r.get("features") or [0] for r in requests])
        width = max(1, max(len(r["candidates"]) for r in requests))
        candidates = _pad([r["candidates"] for r in requests], width)
        m1 = torch.zeros(len(requests), width)
        for i, r in enumerate(requests):
            if r["m1"]:
                m1[i, : len(r["m1"])] = torch.as_tensor(r["m1"])
        scores = model.score(past, items, features, candidates, m1)  # [B, R]
        out = []
        for i, r in enumerate(requests):
            n = len(r["candidates"])
            ranked = sorted(zip(r["candidates"], scores[i, :n].tolist(), strict=True),
                            key=lambda cs: -cs[1])
            ranked += [(c, p - 1.0) for c, p in zip(r.get("tail", []), r.get("tail_m1", []),
                                                    strict=True)]
            ranked = ranked[: r["k"]]
            out.append({"version": model.version,
                        "categories": [model.category_name(c) for c, _ in ranked],
                        "scores": [s for _, s in ranked]})
        return out


def _indices(model: ServingModel, names) -> list[int]:
    lookup = getattr(model, "category_index", None)
    if not names or lookup is None:
        return []
    found = (lookup(n) for n in names)
    return sorted({i for i in found if i})


@dataclass
class Recommendation:
    """One answer, whichever host computed it."""

    user_id: str
    categories: list[str]
    scores: list[float]
    model_version: str
    feature_timestamp: int | None
    cold_start: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
