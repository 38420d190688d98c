"""SASRec with categories as items (paper §6.2 baseline).

Paper: W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation",
ICDM 2018 (https://arxiv.org/abs/1808.09781). Architecture as in the authors'
code: item embedding · √d + learned positional embedding, dropout, padding
rows zeroed; each block is Q = LN(x), x = Q + causal multi-head attention(Q,
x, x), then x = LN(x), x = x + FFN(x) (ReLU, dropout), padding rows zeroed
again; a final LayerNorm; the item embedding is the output layer.

Differences from the original (documented in :mod:`ccrec.baselines.sequential`):
sequences are right-padded (the batch convention; with causal attention a real
position never sees padding, so only the positional indices differ), k = 10
instead of 200, and the default loss is the full softmax CE over the |C|
categories (``loss="bce"`` restores the one-sampled-negative BCE). Training
predicts the next category at every past position and the future categories
γ_t at the last one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ccrec.baselines.sequential import SequenceConfig, SequentialRecommender


@dataclass(frozen=True)
class SASRecConfig(SequenceConfig):
    """SASRec's hyperparameters (see :class:`SequenceConfig` for the shared ones).

    Args:
        n_heads: attention heads (the paper: 1; d_model must divide by it).
    """

    n_heads: int = 1


class PointWiseFeedForward(nn.Module):
    """SASRec's FFN: Linear → ReLU → dropout → Linear → dropout, plus the input.

    Args:
        d_model: hidden size.
        dropout: dropout rate.
    """

    def __init__(self, d_model: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, d_model), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(d_model, d_model), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, k, d] → [B, k, d]
        return x + self.net(x)


class CausalSelfAttentionEncoder(nn.Module):
    """SASRec's stack of causal self-attention blocks over embedded sequences.

    Also CLRec's user tower (:mod:`ccrec.baselines.clrec`).

    Args:
        d_model: hidden size.
        n_heads: attention heads.
        n_layers: blocks.
        max_len: k, for the learned positional embedding.
        dropout: dropout rate.
    """

    def __init__(self, d_model: int, n_heads: int, n_layers: int, max_len: int,
                 dropout: float) -> None:
        super().__init__()
        self.position = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)
        self.attention_norms = nn.ModuleList(nn.LayerNorm(d_model, eps=1e-8)
                                             for _ in range(n_layers))
        self.attentions = nn.ModuleList(
            nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
            for _ in range(n_layers))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(d_model, eps=1e-8) for _ in range(n_layers))
        self.ffns = nn.ModuleList(PointWiseFeedForward(d_model, dropout) for _ in range(n_layers))
        self.last_norm = nn.LayerNorm(d_model, eps=1e-8)

    def forward(self, embedded: Tensor, mask: Tensor) -> Tensor:
        # embedded: [B, k, d] item embeddings (already scaled), mask: [B, k] bool
        k = embedded.shape[1]
        positions = torch.arange(k, device=embedded.device)
        keep = mask.unsqueeze(-1).to(embedded.dtype)  # [B, k, 1]
        x = self.dropout(embedded + self.position(positions)) * keep  # [B, k, d]
        future = torch.ones(k, k, dtype=torch.bool, device=embedded.device).triu(1)  # [k, k]
        for attn_norm, attn, ffn_norm, ffn in zip(
                self.attention_norms, self.attentions, self.ffn_norms, self.ffns, strict=True):
            q = attn_norm(x)  # [B, k, d]
            a, _ = attn(q, x, x, attn_mask=future, need_weights=False)  # [B, k, d]
            x = ffn_norm(q + a)  # [B, k, d]
            x = ffn(x) * keep  # [B, k, d]
        return self.last_norm(x)  # [B, k, d]


class SASRec(SequentialRecommender):
    """SASRec (Kang & McAuley, ICDM 2018) over the past category sequence.

    Args:
        num_categories: |C|.
        max_len: k, the longest past sequence.
        config: :class:`SASRecConfig` (defaults: d=64, 2 blocks, 1 head, dropout 0.2).
    """

    name = "SASRec"

    def __init__(self, num_categories: int, max_len: int, config: SASRecConfig | None = None
                 ) -> None:
        config = config or SASRecConfig()
        super().__init__(num_categories, max_len, config)
        self.encoder = CausalSelfAttentionEncoder(
            config.d_model, config.n_heads, config.n_layers, max_len, config.dropout)

    def encode(self, past_categories: Tensor) -> Tensor:
        # past_categories: [B, k] long, 0 = padding
        x = self.item_embedding(past_categories) * math.sqrt(self.config.d_model)  # [B, k, d]
        return self.encoder(x, past_categories != 0)  # [B, k, d]
