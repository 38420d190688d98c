"""VAERec and VAERec+: a hybrid conditional multinomial VAE over categories.

Paper: Wu, Macdonald & Ounis, "A Hybrid Conditional Variational Autoencoder
Model for Personalised Top-n Recommendation", ICTIR 2020 (HCVAE), built on
Mult-VAE (Liang et al., "Variational Autoencoders for Collaborative
Filtering", WWW 2018). CCRec paper §6.2 uses it with categories as items;
"VAERec+ adds the user's demographic information".

What is modelled here (categories are the items):

* x: the user's category-interaction vector, multi-hot over the past
  categories δ_t, L2-normalised with input dropout (Mult-VAE);
* side information as conditions c (HCVAE): the *item* side information is the
  user's mean item profile π over δ_t (switch ``use_item_profile``), the
  *user* side information is f_t, one-hot per column (``use_user_features``:
  off for VAERec, on for VAERec+);
* HCVAE's two ways of conditioning: ``latent`` (its best: the decoder reads
  [z; c], the encoder reads x) and ``encoder_decoder`` (both read c);
* encoder x → tanh(600) → μ, log σ² (200); decoder → tanh(600) → C logits;
  multinomial log-likelihood, KL annealed linearly to ``anneal_cap``
  (Mult-VAE's β schedule).

Deviations (documented): the likelihood is over the user's *future*
categories γ_t given the past (the task is next-period prediction, not
reconstruction; for a user with a short past, Mult-VAE's fold-in would rank
only what it has seen), and HCVAE's auxiliary reconstruction of the side
information is left out. Sizes are Mult-VAE's; with ≤ a few hundred
categories they train in seconds on a CPU, so nothing is reduced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccrec.batch import CategoryBatch
from ccrec.losses import kl_divergence
from ccrec.models.base import NeuralRecommender

#: Score of the padding column 0: below every real category.
PAD_SCORE = -1e9


def past_multi_hot(past_categories: Tensor, num_categories: int) -> Tensor:
    """[B, k] long past categories → [B, C+1] float multi-hot (column 0 always 0)."""
    out = torch.zeros(past_categories.shape[0], num_categories + 1, device=past_categories.device)
    out.scatter_(1, past_categories, 1.0)
    out[:, 0] = 0.0
    return out


def feature_one_hot(user_features: Tensor, cardinalities: list[int]) -> Tensor:
    """[B, F] long f_t → [B, Σ cardinalities] float, one 1 per column (index 0 = unknown)."""
    parts = [
        F.one_hot(user_features[:, i].clamp(0, n - 1), n).float()
        for i, n in enumerate(cardinalities)
    ]
    if not parts:
        return user_features.new_zeros(user_features.shape[0], 0, dtype=torch.float32)
    return torch.cat(parts, -1)


@dataclass(frozen=True)
class VAERecConfig:
    """Hyperparameters of VAERec / VAERec+.

    Args:
        hidden: encoder/decoder hidden width (Mult-VAE: 600).
        latent: size of z (Mult-VAE: 200).
        dropout: dropout on the normalised input x (Mult-VAE: 0.5).
        anneal_cap: the largest KL weight β (Mult-VAE: 0.2).
        anneal_steps: training steps over which β grows linearly from 0 to the cap.
        use_user_features: condition on f_t (VAERec+).
        use_item_profile: condition on the mean item profile of δ_t (HCVAE's
            item side information).
        condition: ``latent`` (c joins z before the decoder) or
            ``encoder_decoder`` (c joins x and z).
    """

    hidden: int = 600
    latent: int = 200
    dropout: float = 0.5
    anneal_cap: float = 0.2
    anneal_steps: int = 2000
    use_user_features: bool = False
    use_item_profile: bool = True
    condition: Literal["latent", "encoder_decoder"] = "latent"


class VAERec(NeuralRecommender):
    """Hybrid conditional Mult-VAE over categories; VAERec+ with ``use_user_features``.

    Paper: Wu, Macdonald & Ounis, ICTIR 2020 (HCVAE), on Mult-VAE (Liang et
    al., WWW 2018); see the module docstring for the mapping to categories.

    Args:
        num_categories: |C| (scores have C+1 columns; column 0 is padding).
        feature_cardinalities: vocabulary size of each f_t column (0 = unknown).
        profile_dim: P, width of the item profiles in the batches.
        config: :class:`VAERecConfig`.
    """

    name = "VAERec"

    def __init__(
        self,
        num_categories: int,
        feature_cardinalities: list[int],
        profile_dim: int,
        config: VAERecConfig | None = None,
    ) -> None:
        super().__init__()
        config = config or VAERecConfig()
        self.config, self.num_categories = config, num_categories
        self.feature_cardinalities = list(feature_cardinalities)
        self.profile_dim = profile_dim
        if config.use_user_features:
            self.name = "VAERec+"
        cond = (sum(self.feature_cardinalities) if config.use_user_features else 0) + (
            profile_dim if config.use_item_profile else 0
        )
        enc_in = num_categories + (cond if config.condition == "encoder_decoder" else 0)
        self.encoder = nn.Sequential(nn.Linear(enc_in, config.hidden), nn.Tanh())
        self.to_mu = nn.Linear(config.hidden, config.latent)
        self.to_logvar = nn.Linear(config.hidden, config.latent)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent + cond, config.hidden),
            nn.Tanh(),
            nn.Linear(config.hidden, num_categories),
        )
        self.input_dropout = nn.Dropout(config.dropout)
        self.steps = 0  # KL-annealing counter (training steps taken)

    def condition(self, batch: CategoryBatch) -> Tensor:
        """c = [one-hot f_t (VAERec+); mean item profile of δ_t]: [B, cond]."""
        parts = []
        if self.config.use_user_features:
            parts.append(feature_one_hot(batch.user_features, self.feature_cardinalities))
        if self.config.use_item_profile:
            mask = batch.mask.unsqueeze(-1).float()  # [B, k, 1]
            mean = (batch.past_profiles * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [B, P]
            parts.append(mean)
        if not parts:
            return batch.past_profiles.new_zeros(len(batch), 0)
        return torch.cat(parts, -1)

    def forward(self, batch: CategoryBatch) -> tuple[Tensor, Tensor, Tensor]:
        x = past_multi_hot(batch.past_categories, self.num_categories)[:, 1:]  # [B, C]
        x = self.input_dropout(F.normalize(x, dim=-1))  # [B, C]
        c = self.condition(batch)  # [B, cond]
        if self.config.condition == "encoder_decoder":
            x = torch.cat([x, c], -1)  # [B, C + cond]
        h = self.encoder(x)  # [B, hidden]
        mu, logvar = self.to_mu(h), self.to_logvar(h)  # [B, latent] each
        z = mu
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # [B, latent]
        logits = self.decoder(torch.cat([z, c], -1))  # [B, C]
        pad = logits.new_full((logits.shape[0], 1), PAD_SCORE)
        return torch.cat([pad, logits], -1), mu, logvar  # [B, C+1], [B, latent] ×2

    def beta(self) -> float:
        """The current KL weight β (linear annealing to the cap)."""
        return min(self.config.anneal_cap, self.steps / max(self.config.anneal_steps, 1))

    def loss(self, batch: CategoryBatch) -> Tensor:
        logits, mu, logvar = self(batch)
        if self.training:
            self.steps += 1
        # multinomial log-likelihood of the future categories (column 0 never a target)
        nll = -(F.log_softmax(logits[:, 1:], -1) * batch.targets[:, 1:]).sum(-1)  # [B]
        # validation (early stopping) uses the final β, so epochs stay comparable
        beta = self.beta() if self.training else self.config.anneal_cap
        return (nll + beta * kl_divergence(mu, logvar)).mean()

    @torch.no_grad()
    def score(self, batch: CategoryBatch) -> Tensor:
        was_training = self.training
        self.eval()
        logits, _, _ = self(batch)  # [B, C+1]
        self.train(was_training)
        return logits


def vaerec_plus(
    num_categories: int,
    feature_cardinalities: list[int],
    profile_dim: int,
    config: VAERecConfig | None = None,
) -> VAERec:
    """VAERec+: :class:`VAERec` conditioned on the user features f_t as well."""
    config = replace(config or VAERecConfig(), use_user_features=True)
    return VAERec(num_categories, feature_cardinalities, profile_dim, config)
