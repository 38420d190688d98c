"""Stage 2: the user-distinctive category encoder, a VAE (paper §5.2).

Input of one category interaction (CI): X = [f_t; π; c], the one-hot user
features (one block per f_t column), the CI's L1-normalised item profile
(hashed into ``item_profile_dim`` buckets, see :func:`ccrec.batch.item_buckets`)
and the one-hot category. Two MLPs give μ and log σ²; a reparameterised
sample is decoded back to X. At inference the embedding of the CI is μ.

The same encoder embeds a user's profile alone: μ of X = [f_t; 0; 0], the
input with no item and no category (:meth:`CategoryVAE.profile`). Training
shows it that input too (each CI row is also seen with its π and c blanked
with probability ``profile_rate``), so the profile embedding is one the VAE
has learnt to reconstruct f_t from. M2 reads it (:meth:`user_embeddings`) and
answers a newcomer without history by who they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccrec.batch import InteractionBatch
from ccrec.losses import vae_loss


@dataclass(frozen=True)
class EncoderConfig:
    """Hyperparameters of the VAE.

    Args:
        item_profile_dim: P, buckets of the item profile π.
        hidden: width of the encoder/decoder MLPs' hidden layer.
        latent_dim: E, the embedding size (paper: 256).
        beta: weight of the KL term.
        dropout: dropout on the input.
        profile_rate: share of training rows seen as the profile alone
            (π and c blanked).
    """

    item_profile_dim: int = 512
    hidden: int = 256
    latent_dim: int = 256
    beta: float = 1.0
    dropout: float = 0.0
    profile_rate: float = 0.0


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class CategoryVAE(nn.Module):
    """The user-distinctive category encoder.

    Paper: CCRec §5.2 (a VAE after Kingma & Welling 2014 over [f_t; π_t; δ_t]).

    Args:
        feature_cardinalities: vocabulary size of each f_t column (index 0 = unknown).
        num_categories: |C|.
        config: :class:`EncoderConfig`.
    """

    def __init__(
        self, feature_cardinalities: list[int], num_categories: int, config: EncoderConfig
    ) -> None:
        super().__init__()
        self.feature_cardinalities = list(feature_cardinalities)
        self.num_categories, self.config = num_categories, config
        self.segments = [*self.feature_cardinalities, config.item_profile_dim, num_categories + 1]
        d_in = sum(self.segments)
        self.dropout = nn.Dropout(config.dropout)
        self.mu = _mlp(d_in, config.hidden, config.latent_dim)
        self.logvar = _mlp(d_in, config.hidden, config.latent_dim)
        self.decoder = _mlp(config.latent_dim, config.hidden, d_in)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def inputs(self, user_features: Tensor, profiles: Tensor, categories: Tensor) -> Tensor:
        """X = [one-hot f_t; π; one-hot c]: [..., F], [..., P], [...] → [..., D]."""
        blocks = [
            F.one_hot(user_features[..., i], n).to(profiles.dtype)
            for i, n in enumerate(self.feature_cardinalities)
        ]
        blocks.append(profiles)
        blocks.append(F.one_hot(categories, self.num_categories + 1).to(profiles.dtype))
        return torch.cat(blocks, -1)

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        # x: [B, D]
        h = self.dropout(x)
        mu, logvar = self.mu(h), self.logvar(h)  # [B, E], [B, E]
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # [B, E]
        else:
            z = mu
        recon = self.decoder(z)  # [B, D]
        return list(recon.split(self.segments, -1)), mu, logvar

    def loss(self, batch: InteractionBatch) -> Tensor:
        profiles, categories = batch.profiles, batch.categories
        if self.training and self.config.profile_rate > 0:
            blank = torch.rand(len(categories), device=categories.device) < \
                self.config.profile_rate  # [B]
            profiles = profiles.masked_fill(blank.unsqueeze(-1), 0.0)
            categories = categories.masked_fill(blank, 0)
        x = self.inputs(batch.user_features, profiles, categories)
        recon, mu, logvar = self(x)
        total, _ = vae_loss(
            recon, batch.user_features, profiles, categories, mu, logvar, self.config.beta,
        )
        return total

    def embed(self, user_features: Tensor, profiles: Tensor, categories: Tensor) -> Tensor:
        """μ of each past CI: f_t [B, F], π [B, k, P], c [B, k] → [B, k, E] (0 at padding)."""
        k = categories.shape[1]
        feats = user_features.unsqueeze(1).expand(-1, k, -1)  # [B, k, F]
        x = self.inputs(feats, profiles, categories)  # [B, k, D]
        mu = self.mu(x)  # [B, k, E]
        return mu * (categories != 0).unsqueeze(-1).to(mu.dtype)

    def profile(self, user_features: Tensor) -> Tensor:
        """μ of the profile alone, X = [f_t; 0; 0]: f_t [B, F] → [B, E]."""
        b = user_features.shape[0]
        blank = torch.zeros(b, self.config.item_profile_dim, device=user_features.device)
        categories = torch.zeros(b, dtype=torch.long, device=user_features.device)
        return self.mu(self.inputs(user_features, blank, categories))  # [B, E]

    def user_embeddings(self, user_features: Tensor, profiles: Tensor,
                        categories: Tensor) -> Tensor:
        """M2's VAE input: [profile; CI embeddings], f_t [B, F], π [B, k, P], c [B, k]
        → [B, k+1, E] (slot 0 the profile, slots 1..k as :meth:`embed`)."""
        return torch.cat([self.profile(user_features).unsqueeze(1),
                          self.embed(user_features, profiles, categories)], 1)
