"""The model engineer's bundle (:mod:`ccrec.bundle`) as a :class:`serve.model.ServingModel`.

The stages call the bundle's own modules — ``model.sampler`` (M1),
``candidates_from_m1`` (r_t), ``model.encoder.embed`` (VAE μ) and
``model.scorer`` (M2) — so serving ranks exactly as
:meth:`ccrec.models.cascade.CCRec.score_tensors` does, split at the r_t
boundary between the Sampler and Scorer deployments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ccrec.batch import item_buckets
from ccrec.bundle import Bundle
from ccrec.models.cascade import candidates_from_m1


class BundleModel:
    """A loaded :class:`ccrec.bundle.Bundle` behind the serving protocol.

    Args:
        bundle: the loaded bundle.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.model = bundle.model.eval()
        self.version = bundle.version
        self.categories: list[str] = list(bundle.vocab["categories"])
        self.num_categories = len(self.categories) - 1
        self._index = {c: i for i, c in enumerate(self.categories) if i > 0}
        self.max_past = bundle.config.max_past
        self.profile_dim = bundle.config.encoder.item_profile_dim
        self.num_features = len(bundle.vocab["user_features"])
        with torch.inference_mode():
            empty = torch.zeros(1, self.max_past, dtype=torch.long)
            self._prior = self.model.sampler(empty)[0].exp()  # M1 on an empty past

    def category_name(self, index: int) -> str:
        return self.categories[index]

    def category_index(self, name: str) -> int | None:
        return self._index.get(name)

    def _past(self, past: Tensor) -> Tensor:
        out = torch.zeros(past.shape[0], self.max_past, dtype=torch.long)
        width = min(past.shape[1], self.max_past)
        out[:, :width] = past[:, :width]
        return out

    def sample(self, past: Tensor) -> Tensor:
        return self.model.sampler(self._past(past))

    def candidates(self, log_probs: Tensor, past: Tensor) -> tuple[Tensor, Tensor]:
        return candidates_from_m1(log_probs, self._past(past), self.model.candidate_config)

    def _profiles(self, past_items: list[list[list[int]]]) -> Tensor:
        n, k, p = len(past_items), self.max_past, self.profile_dim
        profiles = torch.zeros(n * k, p)
        for i, user in enumerate(past_items):
            for j, items in enumerate(user[:k]):
                if items:
                    b = torch.from_numpy(item_buckets(np.asarray(items, np.int64), p))
                    profiles[i * k + j].index_add_(0, b, torch.full((len(b),), 1.0 / len(b)))
        return profiles.view(n, k, p)

    def score(self, past, past_items, user_features, candidates, m1) -> Tensor:
        past = self._past(past)
        feats = torch.zeros(past.shape[0], self.num_features, dtype=torch.long)
        width = min(user_features.shape[1], self.num_features)
        feats[:, :width] = user_features[:, :width]
        emb = None
        if self.model.scorer.config.use_vae and self.model.encoder is not None:
            emb = self.model.encoder.embed(feats, self._profiles(past_items), past)  # [B,k,E]
        return self.model.scorer(past, emb, candidates, m1)  # [B, R]

    def popularity(self) -> Tensor:
        return self._prior.clone()

    def profile_prior(self, user_features: Tensor) -> Tensor | None:
        return None


def load_ccrec_bundle(path: Path) -> BundleModel:
    """Load a ``ccrec-bundle`` directory (raises :class:`ccrec.bundle.BundleError`)."""
    return BundleModel(Bundle.load(path))
