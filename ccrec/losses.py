"""Every loss of the cascade (paper §5), in one place. Models return scores.

* :func:`mle_loss`: stage 1, NLL with one term per future category.
* :func:`vae_loss`: stage 2, reconstruction of X = [f_t; π; category] + KL.
* :func:`precision_loss`, :func:`scorer_loss`: stage 3, L_precision + L_MSE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PrecisionMode = Literal["weighted", "literal", "none"]
PrecisionWeighting = Literal["m1_prob", "m1_normalized", "uniform"]


def mle_loss(log_probs: Tensor, targets: Tensor) -> Tensor:
    """L_MLE = Σ_t Σ_{c ∈ γ_t} NLL(M1(δ_t), c), averaged over the (t, c) pairs.

    Args:
        log_probs: [B, C+1] log-probabilities (column 0 is padding).
        targets: [B, C+1] multi-hot future categories.
    """
    return -(targets * log_probs).sum() / targets.sum().clamp(min=1.0)


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per row: -½ Σ (1 + log σ² − μ² − σ²). [B]."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def vae_loss(
    recon: Sequence[Tensor],
    feature_targets: Tensor,
    profile_target: Tensor,
    category_target: Tensor,
    mu: Tensor,
    logvar: Tensor,
    beta: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reconstruction of X = [f_t; π; category] plus β·KL, averaged over rows.

    The reconstruction uses the likelihood that fits each part: a softmax
    cross-entropy per categorical f_t column and for the category, and the
    multinomial log-likelihood −Σ π_i log softmax(x̂)_i for the L1-normalised
    item profile (as Mult-VAE, Liang et al. 2018).

    Args:
        recon: decoder logits, one tensor per f_t column, then profile, then category.
        feature_targets: [B, F] long f_t indices.
        profile_target: [B, P] float, L1-normalised item profile.
        category_target: [B] long category.
        mu, logvar: [B, E] posterior parameters.
        beta: weight of the KL term.
    """
    num_features = feature_targets.shape[1]
    feature_terms = [
        F.cross_entropy(recon[i], feature_targets[:, i], reduction="none")
        for i in range(num_features)
    ]
    features = torch.stack(feature_terms, -1).sum(-1) if feature_terms else mu.new_zeros(len(mu))
    profile = -(profile_target * F.log_softmax(recon[num_features], -1)).sum(-1)
    category = F.cross_entropy(recon[num_features + 1], category_target, reduction="none")
    kl = kl_divergence(mu, logvar)
    recon_total = features + profile + category
    total = (recon_total + beta * kl).mean()
    parts = {"recon": recon_total.mean().detach(), "kl": kl.mean().detach()}
    return total, parts


def precision_weights(
    candidate_m1: Tensor, mask: Tensor, weighting: PrecisionWeighting = "m1_prob"
) -> Tensor:
    """The false-positive weights w_j of L_precision, [B, R], zero at padding.

    ``m1_prob``: w_j = y^{M1}_j. ``m1_normalized``: y^{M1}_j divided by the mean
    y^{M1} over the user's candidates (same ordering, unit mean, so the term's
    size does not shrink with |C|). ``uniform``: w_j = 1.
    """
    m = mask.float()
    if weighting == "uniform":
        return m
    w = candidate_m1.detach() * m
    if weighting == "m1_normalized":
        mean = w.sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1.0)
        w = w / mean.clamp(min=1e-12)
    return w


def precision_loss(
    scores: Tensor,
    labels: Tensor,
    candidate_m1: Tensor,
    mask: Tensor,
    mode: PrecisionMode = "weighted",
    weighting: PrecisionWeighting = "m1_prob",
) -> Tensor:
    """L_precision, summed over candidates and averaged over users.

    ``weighted`` (our reading of the paper's intent, the default):
    L = Σ_j w_j · ReLU(ŷ_j − y_j)², with w_j from :func:`precision_weights`.
    It is zero for true positives (y_j = 1 ≥ ŷ_j) and penalises a false
    positive's score more the more probable M1 found it.

    ``literal`` (paper §5.3 as printed, kept for the record):
    L = Σ_j ReLU(y^{M1}_j − y_j)². It does not depend on ŷ, so it adds a
    constant and no gradient to the scorer.

    ``none``: 0 (the plain-MSE ablation).

    Args:
        scores: [B, R] scorer outputs ŷ in [0, 1].
        labels: [B, R] y ∈ {0, 1}.
        candidate_m1: [B, R] y^{M1}.
        mask: [B, R] bool, real candidates.
    """
    m = mask.float()
    users = max(scores.shape[0], 1)
    if mode == "none":
        return scores.new_zeros(())
    if mode == "literal":
        return (F.relu(candidate_m1.detach() - labels).pow(2) * m).sum() / users
    w = precision_weights(candidate_m1, mask, weighting)
    return (w * F.relu(scores - labels).pow(2)).sum() / users


def mse_loss(scores: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """L_MSE = Σ_j (y_j − ŷ_j)², summed over candidates, averaged over users."""
    return ((labels - scores).pow(2) * mask.float()).sum() / max(scores.shape[0], 1)


def scorer_loss(
    scores: Tensor,
    labels: Tensor,
    candidate_m1: Tensor,
    mask: Tensor,
    mode: PrecisionMode = "weighted",
    weighting: PrecisionWeighting = "m1_prob",
    precision_lambda: float = 1.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """L_total = λ·L_precision + L_MSE (paper §5.3; λ = 1 in the paper)."""
    prec = precision_loss(scores, labels, candidate_m1, mask, mode, weighting)
    mse = mse_loss(scores, labels, mask)
    return precision_lambda * prec + mse, {"precision": prec.detach(), "mse": mse.detach()}
