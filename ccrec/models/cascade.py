"""The cascade M1 → candidates r_t → VAE embeddings → M2, as one recommender, and its config."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ccrec.batch import CategoryBatch
from ccrec.models.base import TrainConfig
from ccrec.models.encoder import CategoryVAE, EncoderConfig
from ccrec.models.sampler import MLESampler, SamplerConfig
from ccrec.models.scorer import PrecisionScorer, ScorerConfig


@dataclass(frozen=True)
class CandidateConfig:
    """How stage 1's candidates r_t are formed.

    Args:
        size: |r_t|, the number of top-M1 categories (paper Fig. 7 varies it).
        include_past: also add the user's past categories (the authors' code).
    """

    size: int = 10
    include_past: bool = True


@dataclass(frozen=True)
class CascadeConfig:
    """Everything that defines one trained cascade.

    Args:
        max_past: k, past category interactions per user (≤ the prepared k).
        seed: base seed of every stage.
        sampler, encoder, scorer: the stages' hyperparameters.
        candidates: |r_t| and the past-categories switch.
        train_sampler, train_encoder, train_scorer: how each stage trains.
        warm_start: a bundle directory whose weights initialise every stage
            (continual training fine-tunes the served model); None: fresh weights.
    """

    max_past: int = 10
    seed: int = 0
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    train_sampler: TrainConfig = field(default_factory=TrainConfig)
    train_encoder: TrainConfig = field(default_factory=TrainConfig)
    train_scorer: TrainConfig = field(default_factory=lambda: TrainConfig(monitor="HR@1"))
    warm_start: str | None = None


def candidates_from_m1(
    log_probs: Tensor, past_categories: Tensor, config: CandidateConfig
) -> tuple[Tensor, Tensor]:
    """r_t and y^{M1}: top-``size`` categories of M1 (+ past ones), 0-padded.

    Args:
        log_probs: [B, C+1] M1 log-probabilities (column 0 padding).
        past_categories: [B, k] long.
    Returns:
        candidates [B, R] long (R = size, or size + k with ``include_past``;
        duplicates and padding are 0) and their M1 probabilities [B, R].
    """
    num = log_probs.shape[1] - 1
    top = log_probs[:, 1:].topk(min(config.size, num), -1).indices + 1  # [B, size]
    if config.include_past:
        cands = torch.cat([top, past_categories], 1)  # [B, size + k]
        # drop duplicates: keep the first occurrence of each category
        same = cands.unsqueeze(2) == cands.unsqueeze(1)  # [B, R, R]
        earlier = torch.ones_like(same[0]).tril(-1).bool()  # [R, R], j < i
        dup = (same & earlier).any(-1)  # [B, R]
        cands = cands.masked_fill(dup, 0)
    else:
        cands = top
    probs = log_probs.exp().gather(1, cands) * (cands != 0)
    return cands, probs


class CCRec(nn.Module):
    """The whole cascade scoring every category for a :class:`CategoryBatch`.

    Paper: CCRec §4–§5. Candidates are ranked by M2's score ŷ ∈ (0, 1);
    every other category comes after them in M1's order (score y^{M1} − 1), so
    top-k lists longer than |r_t| are still well defined. It only scores: the
    three stages are trained one after the other by
    :func:`ccrec.train.cascade.train_cascade` (or its Ray Train twin), which
    returns this model.

    Args:
        sampler: stage 1, :class:`MLESampler`.
        encoder: stage 2, :class:`CategoryVAE` (None when the scorer ignores it).
        scorer: stage 3, :class:`PrecisionScorer`.
        candidates: :class:`CandidateConfig`.
    """

    name = "CCRec"

    def __init__(
        self,
        sampler: MLESampler,
        encoder: CategoryVAE | None,
        scorer: PrecisionScorer,
        candidates: CandidateConfig,
    ) -> None:
        super().__init__()
        self.sampler, self.encoder, self.scorer = sampler, encoder, scorer
        self.candidate_config = candidates

    @property
    def num_categories(self) -> int:
        return self.sampler.num_categories

    def score(self, batch: CategoryBatch) -> Tensor:
        return self.score_tensors(
            batch.past_categories, batch.past_profiles, batch.user_features
        )

    def score_tensors(
        self, past_categories: Tensor, past_profiles: Tensor | None,
        user_features: Tensor | None, ci_embeddings: Tensor | None = None,
    ) -> Tensor:
        # past_categories: [B, k]; past_profiles: [B, k, P]; user_features: [B, F];
        # ci_embeddings: [B, k+1, E], the VAE's embeddings when computed already
        log_probs = self.sampler(past_categories)  # [B, C+1]
        cands, m1 = candidates_from_m1(log_probs, past_categories, self.candidate_config)
        emb = ci_embeddings
        if emb is None and self.scorer.config.use_vae:
            assert self.encoder is not None
            emb = self.encoder.user_embeddings(user_features, past_profiles,
                                               past_categories)  # [B, k+1, E]
        scores = self.scorer(past_categories, emb, cands, m1)  # [B, R]
        out = log_probs.exp() - 1.0  # [B, C+1]: non-candidates rank below candidates
        out = out.scatter(1, cands, torch.where(cands != 0, scores, out.gather(1, cands)))
        out[:, 0] = -2.0
        return out
