"""Stage 3: the precision-centric scorer M2 (paper §5.3).

For each candidate c_j ∈ r_t: the E2 embeddings of the past categories and of
c_j, and an MLP over the VAE embeddings of the past category interactions, are
concatenated and a 2-layer MLP gives the score ŷ_j ∈ (0, 1). It is trained
with L_precision + L_MSE (:func:`ccrec.losses.scorer_loss`).

The VAE input of M2 is [B, k+1, E] (:meth:`ccrec.models.encoder.CategoryVAE.user_embeddings`):
slot 0 embeds the user's profile f_t alone, slots 1..k the past category
interactions. With ``use_profile`` the profile slot is a further input, so a
user with no past (a newcomer) is still scored by who they are.

With ``residual`` the score is ŷ_j = σ(a · log y^{M1}_j + MLP(x_j)), a ≥ 0
learnt, the MLP's last layer starting at zero: the untrained scorer ranks the
candidates exactly as M1 does, and training moves away from M1's order only
where the data supports it (early stopping on validation keeps the best).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ccrec.batch import CandidateBatch
from ccrec.losses import PrecisionMode, PrecisionWeighting, scorer_loss
from ccrec.models.layers import last_present, masked_mean


@dataclass(frozen=True)
class ScorerConfig:
    """Hyperparameters and switches of M2.

    Args:
        d_model: E2 embedding size (paper: 64).
        hidden: width of the 2-layer MLPs.
        dropout: dropout in the score MLP.
        use_vae: feed the VAE embeddings (off = the MLE+Cascading ablation).
        precision_loss: ``weighted`` (our reading, default), ``literal`` (the
            paper's printed formula, no gradient) or ``none`` (plain MSE, the
            MLE+VAE ablation).
        precision_weighting: w_j of the weighted loss (``m1_prob`` = y^{M1}_j).
        precision_lambda: weight of L_precision against L_MSE (paper: 1).
        interaction_features: also feed u ⊙ c_j and how often c_j occurs in δ_t
            (our addition; off = the paper's plain concatenation).
        use_m1_score: also feed log y^{M1}_j (our addition; off in the paper).
        use_profile: also feed the VAE embedding of f_t alone (needs ``use_vae``;
            our addition: the profile-based answer for users with no past).
        residual: ŷ_j = σ(a · log y^{M1}_j + MLP(x_j)), starting as M1's order
            (our addition; off = the paper's plain MLP score).
    """

    d_model: int = 64
    hidden: int = 128
    dropout: float = 0.1
    use_vae: bool = True
    precision_loss: PrecisionMode = "weighted"
    precision_weighting: PrecisionWeighting = "m1_prob"
    precision_lambda: float = 1.0
    interaction_features: bool = True
    use_m1_score: bool = False
    use_profile: bool = False
    residual: bool = False


class PrecisionScorer(nn.Module):
    """M2, the precision-centric recommender.

    Paper: CCRec §5.3 (Fig. 6).

    Args:
        num_categories: |C|.
        embedding_dim: E, the VAE embedding size (ignored when ``use_vae`` is off).
        config: :class:`ScorerConfig`.
    """

    def __init__(self, num_categories: int, embedding_dim: int, config: ScorerConfig) -> None:
        super().__init__()
        self.num_categories, self.embedding_dim, self.config = (
            num_categories, embedding_dim, config)
        d, h = config.d_model, config.hidden
        self.e2 = nn.Embedding(num_categories + 1, d, padding_idx=0)
        self.vae_mlp = (
            nn.Sequential(nn.Linear(embedding_dim, h), nn.ReLU(), nn.Linear(h, d))
            if config.use_vae else None
        )
        self.profile_mlp = (
            nn.Sequential(nn.Linear(embedding_dim, h), nn.ReLU(), nn.Linear(h, d))
            if config.use_vae and config.use_profile else None
        )
        user_dim = (2 + (self.vae_mlp is not None) + (self.profile_mlp is not None)) * d
        self.user_proj = nn.Linear(user_dim, d) if config.interaction_features else None
        d_in = user_dim + d
        if config.interaction_features:
            d_in += d + 1
        if config.use_m1_score:
            d_in += 1
        self.mlp = nn.Sequential(
            nn.Linear(d_in, h), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, 1)
        )
        if config.residual:
            self.m1_weight = nn.Parameter(torch.ones(()))
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    def forward(
        self,
        past_categories: Tensor,
        ci_embeddings: Tensor | None,
        candidates: Tensor,
        candidate_m1: Tensor,
    ) -> Tensor:
        # past_categories: [B, k]; ci_embeddings: [B, k+1, E] (slot 0 = profile);
        # candidates, candidate_m1: [B, R]
        mask = past_categories != 0  # [B, k]
        past = self.e2(past_categories)  # [B, k, d]
        parts = [masked_mean(past, mask), last_present(past, mask)]  # 2 × [B, d]
        if self.vae_mlp is not None:
            assert ci_embeddings is not None
            parts.append(masked_mean(self.vae_mlp(ci_embeddings[:, 1:]), mask))  # [B, d]
        if self.profile_mlp is not None:
            assert ci_embeddings is not None
            parts.append(self.profile_mlp(ci_embeddings[:, 0]))  # [B, d]
        user = torch.cat(parts, -1)  # [B, U]
        R = candidates.shape[1]
        cand = self.e2(candidates)  # [B, R, d]
        x = [user.unsqueeze(1).expand(-1, R, -1), cand]  # [B, R, U], [B, R, d]
        if self.user_proj is not None:
            x.append(self.user_proj(user).unsqueeze(1) * cand)  # [B, R, d]
            counts = (candidates.unsqueeze(-1) == past_categories.unsqueeze(1)) & mask.unsqueeze(1)
            x.append(counts.sum(-1, keepdim=True).to(cand.dtype) / past_categories.shape[1])
        log_m1 = candidate_m1.clamp(min=1e-8).log()  # [B, R]
        if self.config.use_m1_score:
            x.append(log_m1.unsqueeze(-1))  # [B, R, 1]
        logit = self.mlp(torch.cat(x, -1)).squeeze(-1)  # [B, R]
        if self.config.residual:
            logit = logit + self.m1_weight.clamp(min=0.0) * log_m1
        return torch.sigmoid(logit)  # [B, R]

    def score_batch(self, batch: CandidateBatch) -> Tensor:
        emb = batch.ci_embeddings if self.config.use_vae else None
        return self(batch.past_categories, emb, batch.candidates, batch.candidate_m1)

    def loss(self, batch: CandidateBatch) -> Tensor:
        scores = self.score_batch(batch)
        c = self.config
        total, _ = scorer_loss(
            scores, batch.labels, batch.candidate_m1, batch.candidate_mask,
            c.precision_loss, c.precision_weighting, c.precision_lambda,
        )
        return total
