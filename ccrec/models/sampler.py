"""Stage 1: the MLE sampler M1, a Transformer over the past categories (paper §5.1).

M1 reads δ_t only (no items, no features), classifies the user into |C|
classes with a LogSoftmax, and is trained with one NLL term per future
category. Its top-|r_t| categories, with their probabilities y^{M1}, are the
candidates and false-positive weights of stage 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ccrec.batch import CategoryBatch
from ccrec.losses import mle_loss
from ccrec.models.base import NeuralRecommender
from ccrec.models.layers import last_present, masked_mean

#: The log-probability given to the padding category 0 (never a target).
PAD_LOGIT = -1e4


@dataclass(frozen=True)
class SamplerConfig:
    """Hyperparameters of M1.

    Args:
        d_model: category embedding size d_1 (paper: 64).
        n_heads: attention heads.
        n_layers: Transformer encoder layers.
        ff_dim: the Transformer's feed-forward width.
        hidden: width of the first of the two FC layers.
        dropout: dropout in the Transformer and between the FC layers.
    """

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 128
    hidden: int = 128
    dropout: float = 0.1


class SinusoidalPositionalEncoding(nn.Module):
    """PE(pos, 2i) = sin(pos / 10000^{2i/d}), PE(pos, 2i+1) = cos(…) (Vaswani et al. 2017).

    Args:
        d_model: embedding size.
        max_len: longest sequence.
    """

    def __init__(self, d_model: int, max_len: int) -> None:
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)[:, : d_model // 2]
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, k, d] → [B, k, d]
        return x + self.pe[: x.shape[1]]


class MLESampler(NeuralRecommender):
    """M1: embedding + sinusoidal PE → Transformer encoder → 2 FC → LogSoftmax.

    Paper: "Cascading Category Recommender" (CCRec), §5.1, the Probability
    Weighted Negative Sampler; positional encoding from Vaswani et al. 2017.
    The sequence encoding fed to the FC layers is [last position; masked
    mean], so a padded position never contributes (it is also masked in
    attention via ``src_key_padding_mask``).

    Args:
        num_categories: |C| (the output has C+1 columns; column 0 is padding).
        max_len: k, the longest past sequence.
        config: :class:`SamplerConfig`.
    """

    name = "MLE"

    def __init__(self, num_categories: int, max_len: int, config: SamplerConfig) -> None:
        super().__init__()
        self.num_categories, self.max_len, self.config = num_categories, max_len, config
        d = config.d_model
        self.embedding = nn.Embedding(num_categories + 1, d, padding_idx=0)
        self.position = SinusoidalPositionalEncoding(d, max_len)
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, config.ff_dim, config.dropout, batch_first=True
        )
        self.transformer = nn.TransformerEncoder(
            layer, config.n_layers, enable_nested_tensor=False
        )
        self.head = nn.Sequential(
            nn.Linear(2 * d, config.hidden),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, num_categories + 1),
        )
        self.log_softmax = nn.LogSoftmax(dim=-1)

    def forward(self, past_categories: Tensor) -> Tensor:
        # past_categories: [B, k] long, 0 = padding
        mask = past_categories != 0  # [B, k]
        mask = mask.clone()
        mask[:, 0] |= ~mask.any(1)  # an empty past attends to its first (padding) slot
        x = self.embedding(past_categories) * math.sqrt(self.config.d_model)  # [B, k, d]
        x = self.position(x)  # [B, k, d]
        h = self.transformer(x, src_key_padding_mask=~mask)  # [B, k, d]
        pooled = torch.cat([last_present(h, mask), masked_mean(h, mask)], -1)  # [B, 2d]
        logits = self.head(pooled)  # [B, C+1]
        logits = logits.clone()
        logits[:, 0] = PAD_LOGIT
        return self.log_softmax(logits)  # [B, C+1]

    def loss(self, batch: CategoryBatch) -> Tensor:
        return mle_loss(self(batch.past_categories), batch.targets)

    def score(self, batch: CategoryBatch) -> Tensor:
        return self(batch.past_categories)
