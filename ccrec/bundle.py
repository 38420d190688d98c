"""The versioned model bundle: what training writes and serving loads.

A bundle is one directory per version::

    <root>/<version>/
      manifest.json        format, version id, data set, model dimensions, file digests
      config.json          the CascadeConfig it was trained with
      vocab.json           categories and items (index 0 = padding), user-feature vocabularies, |I|
      metrics.json         training record and evaluation results
      sampler.safetensors  stage 1 (M1) weights
      encoder.safetensors  stage 2 (VAE) weights
      scorer.safetensors   stage 3 (M2) weights

Weights are safetensors (no pickle); loading checks that every file is there,
that the digests and the vocabulary sizes agree with the weights, and fails
with a :class:`BundleError` that says which.

Serving::

    rec = Bundle.load("bundles/ml-1m/<version>").recommender()
    rec.recommend(past_categories=[4, 10, 12], past_items=[[2983, 2886], [2253], [3068]],
                  user_features=[2, 6, 1], k=3)          # → [(category, score), …]
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from ccrec.batch import item_profiles, pad_rows, pad_sequences
from ccrec.config import ConfigError, build, to_dict
from ccrec.inference import EmbeddingCache, eager_stages, fast_stages
from ccrec.models.cascade import CascadeConfig, CCRec
from ccrec.models.encoder import CategoryVAE
from ccrec.models.sampler import MLESampler
from ccrec.models.scorer import PrecisionScorer

FORMAT = "ccrec-bundle"
FORMAT_VERSION = 1
WEIGHT_FILES = {"sampler": "sampler.safetensors", "encoder": "encoder.safetensors",
                "scorer": "scorer.safetensors"}
REQUIRED = ("manifest.json", "config.json", "vocab.json", "metrics.json",
            *WEIGHT_FILES.values())


class BundleError(ValueError):
    """A bundle directory is missing, incomplete or inconsistent."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def save_bundle(
    model: CCRec,
    config: CascadeConfig,
    vocab: dict[str, Any],
    root: str | Path,
    *,
    dataset: str = "",
    metrics: dict[str, Any] | None = None,
    version: str | None = None,
) -> Path:
    """Write ``model`` as a new version under ``root``; returns its directory.

    Args:
        model: the trained cascade (its encoder may be None if the scorer ignores it).
        config: the configuration it was trained with.
        vocab: the prepared data's vocabulary (``categories``, ``user_features``,
            ``items`` or ``num_items``).
        root: the bundles directory, e.g. ``bundles/ml-1m``.
        metrics: anything JSON-serialisable (training record, evaluation).
        version: the version id; default ``<UTC time>-<weights digest>``.
    """
    encoder = model.encoder or CategoryVAE(
        [len(v) for v in vocab["user_features"].values()], model.num_categories, config.encoder)
    states = {"sampler": _state(model.sampler), "encoder": _state(encoder),
              "scorer": _state(model.scorer)}
    digest = hashlib.sha256()
    for name in sorted(states):
        for key, tensor in sorted(states[name].items()):
            digest.update(key.encode())
            digest.update(tensor.numpy().tobytes())
    version = version or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + \
        digest.hexdigest()[:8]
    path = Path(root) / version
    if path.exists():
        raise BundleError(f"{path} already exists; bundles are immutable")
    tmp = path.with_name(f".{version}.tmp")
    tmp.mkdir(parents=True, exist_ok=False)
    for name, state in states.items():
        save_file(state, str(tmp / WEIGHT_FILES[name]), metadata={"stage": name})
    num_items = vocab.get("num_items", len(vocab.get("items", [None])) - 1)
    small_vocab = {"categories": list(vocab["categories"]),
                   "user_features": vocab["user_features"], "num_items": num_items}
    if "items" in vocab:  # the item ids → codes the stream worker validates against
        small_vocab["items"] = list(vocab["items"])
    (tmp / "vocab.json").write_text(json.dumps(small_vocab))
    (tmp / "config.json").write_text(json.dumps(to_dict(config), indent=2))
    (tmp / "metrics.json").write_text(json.dumps(metrics or {}, indent=2, default=float))
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "version": version,
        "dataset": dataset, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "num_categories": model.num_categories,
        "feature_cardinalities": [len(v) for v in vocab["user_features"].values()],
        "has_encoder": model.encoder is not None,
        "files": {f: _sha256(tmp / f) for f in
                  ("config.json", "vocab.json", *WEIGHT_FILES.values())},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    tmp.rename(path)
    return path


@dataclass
class Bundle:
    """A loaded bundle.

    Args:
        path: its directory.
        version: the version id.
        config: the :class:`CascadeConfig`.
        vocab: categories, user-feature vocabularies, |I|.
        metrics: as saved.
        model: the :class:`CCRec` cascade in eval mode.
    """

    path: Path
    version: str
    config: CascadeConfig
    vocab: dict[str, Any]
    metrics: dict[str, Any]
    model: CCRec
    manifest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, *, verify: bool = True) -> Bundle:
        """Load and check a bundle directory (raises :class:`BundleError`)."""
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"{path}: no such bundle directory")
        missing = [f for f in REQUIRED if not (path / f).is_file()]
        if missing:
            raise BundleError(f"{path}: incomplete bundle, missing {missing}")
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            vocab = json.loads((path / "vocab.json").read_text())
            config = build(CascadeConfig, json.loads((path / "config.json").read_text()))
            metrics = json.loads((path / "metrics.json").read_text())
        except (json.JSONDecodeError, ConfigError) as exc:
            raise BundleError(f"{path}: unreadable bundle metadata: {exc}") from exc
        if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
            raise BundleError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} bundle")
        if verify:
            for name, digest in manifest.get("files", {}).items():
                if _sha256(path / name) != digest:
                    raise BundleError(f"{path}: {name} does not match its digest in manifest.json")
        num_categories = len(vocab["categories"]) - 1
        cards = [len(v) for v in vocab["user_features"].values()]
        if num_categories != manifest["num_categories"]:
            raise BundleError(
                f"{path}: vocab.json has {num_categories} categories, the manifest "
                f"{manifest['num_categories']}")
        states = {name: load_file(str(path / f)) for name, f in WEIGHT_FILES.items()}
        rows = states["sampler"]["embedding.weight"].shape[0]
        if rows != num_categories + 1:
            raise BundleError(
                f"{path}: vocab.json has {num_categories} categories but the sampler weights "
                f"have {rows - 1}")
        sampler = MLESampler(num_categories, config.max_past, config.sampler)
        encoder = CategoryVAE(cards, num_categories, config.encoder)
        emb_dim = encoder.latent_dim if config.scorer.use_vae else 0
        scorer = PrecisionScorer(num_categories, emb_dim, config.scorer)
        for name, module in (("sampler", sampler), ("encoder", encoder), ("scorer", scorer)):
            try:
                module.load_state_dict(states[name], strict=True)
            except RuntimeError as exc:
                raise BundleError(
                    f"{path}: {WEIGHT_FILES[name]} does not fit the config/vocabulary: "
                    f"{str(exc).splitlines()[0]} {str(exc).splitlines()[1:3]}") from exc
        model = CCRec(sampler, encoder if config.scorer.use_vae else None, scorer,
                      config.candidates).eval()
        return cls(path=path, version=manifest["version"], config=config, vocab=vocab,
                   metrics=metrics, model=model, manifest=manifest)

    def recommender(self, fast: bool = True) -> CascadeRecommender:
        return CascadeRecommender(self.model, self.vocab, self.config, fast=fast)


@dataclass(frozen=True)
class UserRequest:
    """One user's state, as the feature store holds it.

    Args:
        past_categories: δ_t, category indices 1..C, oldest first.
        past_items: the item indices (1..I) of each past category interaction.
        user_features: one index per f_t column (0 = unknown).
    """

    past_categories: Sequence[int]
    past_items: Sequence[Sequence[int]] | None = None
    user_features: Sequence[int] | None = None


@dataclass(frozen=True)
class Candidates:
    """Stage 1's answer for one user: what the scorer needs besides the user.

    Args:
        categories: r_t, M1's candidates (no padding; excluded categories removed).
        m1: y^{M1}, M1's probability of each candidate.
        tail: the next categories in M1's order (neither in r_t nor excluded), as
            many as the top-k list needs after the candidates.
        tail_m1: their M1 probabilities.
    """

    categories: list[int]
    m1: list[float]
    tail: list[int]
    tail_m1: list[float]


class CascadeRecommender:
    """Top-k categories from a trained cascade, one user or a batch.

    The cascade runs in one call (:meth:`recommend_batch`, through
    :meth:`CCRec.score_tensors`) or split at r_t into its two serving stages:
    :meth:`sample` (M1 → r_t with y^{M1}) and :meth:`score` (VAE μ + M2 over
    r_t). Split, it ranks as the one call does: candidates by M2's score, then
    the other categories in M1's order (score y^{M1} − 1).

    Args:
        model: the :class:`CCRec` cascade.
        vocab: the bundle's vocabulary (category names by index).
        config: the cascade's configuration (k, profile size).
        fast: run the stages as traced graphs where they reproduce the eager model
            bit for bit (:func:`ccrec.inference.fast_stages`), and keep each category
            interaction's VAE μ (:class:`ccrec.inference.EmbeddingCache`).
    """

    def __init__(self, model: CCRec, vocab: dict[str, Any], config: CascadeConfig,
                 fast: bool = True) -> None:
        self.model = model.eval()
        self.categories: list[str] = list(vocab["categories"])
        self.category_index = {c: i for i, c in enumerate(self.categories) if i > 0}
        self.num_categories = len(self.categories) - 1
        self.num_features = len(vocab["user_features"])
        self.max_past = config.max_past
        self.profile_dim = config.encoder.item_profile_dim
        with torch.inference_mode():
            empty = torch.zeros(1, self.max_past, dtype=torch.long)
            self._popularity = self.model.sampler(empty)[0].exp()  # [C+1]
        cards = [len(v) for v in vocab["user_features"].values()]
        self.stages = fast_stages(self.model, self.max_past, self.profile_dim, cards) if fast \
            else eager_stages(self.model)
        use_vae = self.model.scorer.config.use_vae and self.model.encoder is not None
        self.embeddings = EmbeddingCache(self.stages.embed, self.max_past, self.profile_dim,
                                         self.model.encoder.latent_dim) if use_vae and fast \
            else None

    # --- inputs: pasts truncated and padded by ccrec.batch's one rule ---------------------
    def _past(self, requests: Sequence[UserRequest]) -> Tensor:
        """[B, k] long: the most recent k past categories, oldest first."""
        return torch.from_numpy(pad_sequences([r.past_categories for r in requests],
                                              self.max_past))

    def _profiles(self, requests: Sequence[UserRequest]) -> Tensor:
        """[B, k, P] float: the item profiles of the same k category interactions (all
        zero for a request without item lists)."""
        return item_profiles([r.past_items or [] for r in requests], self.max_past,
                             self.profile_dim)

    def _embeddings(self, requests: Sequence[UserRequest], past: Tensor) -> Tensor:
        """[B, k+1, E] VAE μ of the profile and the past CIs (zeros [B, k+1, 1] when M2
        does not read them)."""
        if not self.model.scorer.config.use_vae:
            return torch.zeros(len(requests), self.max_past + 1, 1)
        if self.embeddings is None:
            return self.stages.embed(self._features(requests), self._profiles(requests), past)
        return self.embeddings(past, [r.past_categories for r in requests],
                               [r.past_items or [] for r in requests], self._features(requests))

    def _features(self, requests: Sequence[UserRequest]) -> Tensor:
        """[B, F] long: f_t (0 = unknown)."""
        return pad_rows([list(r.user_features or ())[: self.num_features] for r in requests],
                        self.num_features)

    # --- the two serving stages --------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, requests: Sequence[UserRequest], k: Sequence[int],
               exclude: Sequence[Collection[int]] | None = None) -> list[Candidates]:
        """Stage 1 for each request: r_t with y^{M1}, and a tail long enough for ``k[i]``.

        Args:
            requests: users with at least one past category interaction.
            k: the length of each user's top-k list.
            exclude: category indices never to return, per request.
        """
        past = self._past(requests)  # [B, k]
        cands, m1, rest = self.stages.shortlist(past)  # [B, R], [B, R], [B, C+1]
        out = []
        for i, (row, probs) in enumerate(zip(cands.tolist(), m1.tolist(), strict=True)):
            excluded = set(exclude[i]) if exclude is not None else set()
            kept = [(c, p) for c, p in zip(row, probs, strict=True) if c and c not in excluded]
            if excluded:
                rest[i, sorted(excluded)] = -torch.inf
            tail = rest[i].topk(min(max(k[i] - len(kept), 0), int(torch.isfinite(rest[i]).sum())))
            out.append(Candidates([c for c, _ in kept], [p for _, p in kept],
                                  tail.indices.tolist(), tail.values.exp().tolist()))
        return out

    @torch.inference_mode()
    def score(self, requests: Sequence[UserRequest], candidates: Sequence[Candidates],
              k: Sequence[int]) -> list[list[tuple[int, float]]]:
        """Stage 2 for each request: the top-``k[i]`` (category index, score), best first.

        M2 scores each candidate on its own, so candidates removed in
        :meth:`sample` change no other candidate's score.
        """
        past = self._past(requests)  # [B, k]
        width = max(1, max(len(c.categories) for c in candidates))
        cands = pad_rows([c.categories for c in candidates], width)  # [B, R]
        m1 = torch.zeros(len(candidates), width)  # [B, R]
        for i, c in enumerate(candidates):
            m1[i, : len(c.m1)] = torch.as_tensor(c.m1)
        scores = self.stages.scorer(past, self._embeddings(requests, past), cands,
                                    m1).tolist()  # [B, R]
        out = []
        for i, c in enumerate(candidates):
            ranked = sorted(zip(c.categories, scores[i][: len(c.categories)], strict=True),
                            key=lambda pair: -pair[1])
            ranked += [(t, p - 1.0) for t, p in zip(c.tail, c.tail_m1, strict=True)]
            out.append(ranked[: k[i]])
        return out

    @property
    def scores_profiles(self) -> bool:
        """Whether M2 reads the VAE's profile embedding, so that a user with no past
        but a known profile f_t gets a profile-based answer (``use_profile``)."""
        config = self.model.scorer.config
        return self.model.encoder is not None and config.use_vae and config.use_profile

    def popularity(self) -> Tensor:
        """[C+1] M1's probabilities on an empty history: the cold-start prior."""
        return self._popularity.clone()

    # --- the one-call cascade -------------------------------------------------------------
    @torch.inference_mode()
    def scores(self, requests: Sequence[UserRequest]) -> torch.Tensor:
        """[B, C+1] cascade scores (column 0 is padding)."""
        past = self._past(requests)
        return self.stages.cascade(past, self._embeddings(requests, past))

    @torch.inference_mode()
    def recommend_batch(self, requests: Sequence[UserRequest], k: int = 3,
                        exclude: Sequence[Sequence[int]] | None = None
                        ) -> list[list[tuple[int, float]]]:
        """Top-k (category index, score) per request, best first."""
        scores = self.scores(requests)
        scores[:, 0] = -torch.inf
        if exclude is not None:
            for i, ex in enumerate(exclude):
                if len(ex):
                    scores[i, torch.as_tensor(list(ex), dtype=torch.long)] = -torch.inf
        top = scores.topk(min(k, scores.shape[1] - 1), -1)
        return [
            [(int(c), float(s)) for c, s in zip(ix.tolist(), sc.tolist(), strict=True)
             if s != -float("inf")]
            for ix, sc in zip(top.indices, top.values, strict=True)
        ]

    def recommend(self, past_categories: Sequence[int],
                  past_items: Sequence[Sequence[int]] | None = None,
                  user_features: Sequence[int] | None = None, k: int = 3,
                  exclude: Sequence[int] = ()) -> list[tuple[int, float]]:
        """Top-k (category index, score) for one user, best first."""
        request = UserRequest(past_categories, past_items, user_features)
        return self.recommend_batch([request], k, [exclude])[0]

    def names(self, recommended: Sequence[tuple[int, float]]) -> list[tuple[str, float]]:
        """Replace category indices by their ids in the source data."""
        return [(self.categories[c], s) for c, s in recommended]
