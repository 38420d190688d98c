"""FMLPRec with categories as items (paper §6.2 baseline).

Paper: K. Zhou, H. Yu, W. X. Zhao and J.-R. Wen, "Filter-enhanced MLP is All
You Need for Sequential Recommendation", WWW 2022
(https://arxiv.org/abs/2202.13556). Architecture as in the authors' code:
item + learned positional embedding → LayerNorm → dropout; each block is a
learnable filter layer (rfft along the sequence, multiply by a complex weight
per frequency and channel, irfft, dropout, LayerNorm with the residual)
followed by a feed-forward layer (4·d GELU MLP, dropout, LayerNorm with the
residual); the item embedding is the output layer.

Differences from the original: the sequence is left-padded (right-aligned)
inside the model, as the original's, so the last position is the most recent
category; k = 10 instead of 50. The FFT filter mixes every position, so the
original's next-item loss at every position would let position i see item
i + 1; we therefore train on the future categories γ_t at the last position
only (``causal = False``), with the full softmax CE by default
(``loss="bce"`` restores the sampled-negative BCE).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ccrec.baselines.sequential import (
    FeedForward,
    SequenceConfig,
    SequentialRecommender,
    right_align,
)


@dataclass(frozen=True)
class FMLPRecConfig(SequenceConfig):
    """FMLPRec's hyperparameters (see :class:`SequenceConfig` for the shared ones).

    Args:
        ffn_multiplier: feed-forward inner width as a multiple of d_model (paper: 4).
    """

    ffn_multiplier: int = 4


class LearnableFilter(nn.Module):
    """FMLP-Rec's filter layer: X̃ = irfft(W ⊙ rfft(X)) along the sequence.

    Args:
        max_len: k, the sequence length (the filter has k//2 + 1 frequencies).
        d_model: hidden size (one complex weight per frequency and channel).
        dropout: dropout on the filtered sequence.
    """

    def __init__(self, max_len: int, d_model: int, dropout: float) -> None:
        super().__init__()
        # real and imaginary parts, initialised as in the authors' code (σ = 0.02)
        self.weight = nn.Parameter(torch.randn(1, max_len // 2 + 1, d_model, 2) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model, eps=1e-12)

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, k, d]
        k = x.shape[1]
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")  # [B, k//2+1, d] complex
        spectrum = spectrum * torch.view_as_complex(self.weight)  # [B, k//2+1, d]
        filtered = torch.fft.irfft(spectrum, n=k, dim=1, norm="ortho")  # [B, k, d]
        return self.norm(x + self.dropout(filtered))  # [B, k, d]


class FMLPBlock(nn.Module):
    """One FMLP-Rec layer: learnable filter, then feed-forward.

    Args:
        max_len: k.
        d_model: hidden size.
        ffn_hidden: the feed-forward inner width.
        dropout: dropout rate.
    """

    def __init__(self, max_len: int, d_model: int, ffn_hidden: int, dropout: float) -> None:
        super().__init__()
        self.filter = LearnableFilter(max_len, d_model, dropout)
        self.ffn = FeedForward(d_model, ffn_hidden, dropout)

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, k, d] → [B, k, d]
        return self.ffn(self.filter(x))


class FMLPRec(SequentialRecommender):
    """FMLP-Rec (Zhou et al., WWW 2022) over the past category sequence.

    Args:
        num_categories: |C|.
        max_len: k, the longest past sequence.
        config: :class:`FMLPRecConfig` (defaults: d=64, 2 blocks, dropout 0.2).
    """

    name = "FMLPRec"
    causal = False

    def __init__(self, num_categories: int, max_len: int, config: FMLPRecConfig | None = None
                 ) -> None:
        config = config or FMLPRecConfig()
        super().__init__(num_categories, max_len, config)
        d = config.d_model
        self.position = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            FMLPBlock(max_len, d, config.ffn_multiplier * d, config.dropout)
            for _ in range(config.n_layers))

    def encode(self, past_categories: Tensor) -> Tensor:
        # past_categories: [B, k] long, right-padded; hidden states are right-aligned
        aligned = right_align(past_categories)  # [B, k], most recent at k-1
        positions = torch.arange(aligned.shape[1], device=aligned.device)
        x = self.item_embedding(aligned) + self.position(positions)  # [B, k, d]
        x = self.dropout(self.norm(x))  # [B, k, d]
        for block in self.blocks:
            x = block(x)  # [B, k, d]
        return x

    def user_state(self, hidden: Tensor, past_categories: Tensor) -> Tensor:
        # hidden: [B, k, d] right-aligned → the most recent position [B, d]
        return hidden[:, -1]
