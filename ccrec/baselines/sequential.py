"""What the sequential paper baselines share: categories as items (paper §6.2).

SASRec, FMLPRec, Mamba4Rec and CLRec all read the past category sequence
δ_t ([B, k], oldest first, right-padded with 0), turn it into hidden states
with their own encoder and score every category by the dot product of the
user's state with the category's embedding (the input embedding table, shared
as the output layer as in SASRec). :class:`SequentialRecommender` holds that
common part; a model writes :meth:`~SequentialRecommender.encode` only.

Training targets (the same for every sequential baseline):

* **future**: the user state (the hidden state at the last present position)
  predicts the user's future categories γ_t (multi-label);
* **next** (causal encoders only): the hidden state at position i predicts the
  past category at i + 1, the original papers' "next item at every position"
  objective on the shifted past. A non-causal encoder (FMLPRec's global FFT
  filter) would see the answer, so it trains on the future term only.

The validation loss (eval mode, early stopping) is the future term alone: the
quantity the harness ranks by.

Two losses over those (positions × categories) target rows:

* ``ce`` (default): full softmax cross-entropy, one term per target
  category. With |C| ≤ a few hundred the full softmax is exact and cheap, so
  sampling negatives buys nothing (Mamba4Rec's RecBole code also uses CE).
* ``bce``: the original SASRec/FMLPRec objective, −log σ(s⁺) for each target
  plus −log σ(−s⁻) for ``num_negatives`` categories drawn uniformly from the
  non-targets of the row.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccrec.batch import CategoryBatch
from ccrec.losses import mle_loss
from ccrec.models.base import NeuralRecommender
from ccrec.models.layers import last_present

SequenceLoss = Literal["ce", "bce"]


@dataclass(frozen=True)
class SequenceConfig:
    """Hyperparameters every sequential baseline has.

    Args:
        d_model: category embedding and hidden size.
        n_layers: encoder blocks.
        dropout: dropout rate in the encoder.
        loss: ``ce`` (full softmax) or ``bce`` (sampled negatives), see the module.
        num_negatives: negatives per target row with ``bce``.
        next_weight: weight of the next-category term on the shifted past
            (0 = future targets only; ignored by non-causal encoders).
    """

    d_model: int = 64
    n_layers: int = 2
    dropout: float = 0.2
    loss: SequenceLoss = "ce"
    num_negatives: int = 1
    next_weight: float = 1.0


def softmax_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Full softmax CE, averaged over target categories. logits, targets: [N, C]."""
    return mle_loss(F.log_softmax(logits, -1), targets)


def sampled_bce_loss(logits: Tensor, targets: Tensor, num_negatives: int) -> Tensor:
    """−log σ(s⁺) per target + −log σ(−s⁻) per sampled non-target (SASRec's loss).

    Args:
        logits: [N, C] scores.
        targets: [N, C] multi-hot (at least one target per row).
        num_negatives: negatives drawn per row, uniformly among its non-targets.
    """
    # a row whose every category is a target still needs a distribution to draw from
    weights = (1.0 - targets).clamp(min=1e-6)  # [N, C]
    negatives = torch.multinomial(weights, num_negatives, replacement=True)  # [N, n]
    positive = -(F.logsigmoid(logits) * targets).sum() / targets.sum().clamp(min=1.0)
    negative = -F.logsigmoid(-logits.gather(1, negatives)).mean()
    return positive + negative


def right_align(past_categories: Tensor) -> Tensor:
    """Move each row's categories to the right end: [B, k] right- → left-padded."""
    k = past_categories.shape[1]
    length = (past_categories != 0).sum(1, keepdim=True)  # [B, 1]
    source = torch.arange(k, device=past_categories.device) - (k - length)  # [B, k]
    aligned = past_categories.gather(1, source.clamp(min=0))
    return aligned.masked_fill(source < 0, 0)


class FeedForward(nn.Module):
    """Position-wise FFN with residual and post-LayerNorm (FMLP-Rec, Mamba4Rec).

    Args:
        d_model: hidden size.
        hidden: inner width (4·d_model in both papers).
        dropout: dropout after each linear layer.
    """

    def __init__(self, d_model: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, d_model), nn.Dropout(dropout),
        )
        self.norm = nn.LayerNorm(d_model, eps=1e-12)

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, k, d] → [B, k, d]
        return self.norm(x + self.net(x))


class SequentialRecommender(NeuralRecommender):
    """Base of the sequence baselines: encode δ_t, dot with category embeddings.

    Subclasses implement :meth:`encode` and set ``causal``; everything else
    (user state, scores, the future/next losses) lives here.

    Args:
        num_categories: |C|; scores have C+1 columns, column 0 (padding) is −inf.
        max_len: k, the longest past sequence.
        config: a :class:`SequenceConfig` (or a model's subclass of it).
    """

    #: True when hidden state i depends on positions ≤ i only (enables the next term).
    causal = True

    def __init__(self, num_categories: int, max_len: int, config: SequenceConfig
                 ) -> None:
        super().__init__()
        self.num_categories, self.max_len, self.config = num_categories, max_len, config
        self.item_embedding = nn.Embedding(num_categories + 1, config.d_model, padding_idx=0)
        nn.init.normal_(self.item_embedding.weight, std=config.d_model ** -0.5)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    @abstractmethod
    def encode(self, past_categories: Tensor) -> Tensor:
        """Hidden states [B, k, d] of the past sequence [B, k]."""

    def user_state(self, hidden: Tensor, past_categories: Tensor) -> Tensor:
        """The user's state [B, d]: the hidden state at the last present position."""
        return last_present(hidden, past_categories != 0)

    def category_logits(self, hidden: Tensor) -> Tensor:
        """[..., d] → [..., C] dot products with categories 1..C (padding left out)."""
        return hidden @ self.item_embedding.weight[1:].T

    def forward(self, past_categories: Tensor) -> Tensor:
        # past_categories: [B, k] long, 0 = padding
        hidden = self.encode(past_categories)  # [B, k, d]
        user = self.user_state(hidden, past_categories)  # [B, d]
        logits = self.category_logits(user)  # [B, C]
        pad = logits.new_full((len(logits), 1), -math.inf)
        return torch.cat([pad, logits], 1)  # [B, C+1]

    def score(self, batch: CategoryBatch) -> Tensor:
        return self(batch.past_categories)

    def _loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.config.loss == "bce":
            return sampled_bce_loss(logits, targets, self.config.num_negatives)
        return softmax_loss(logits, targets)

    def loss(self, batch: CategoryBatch) -> Tensor:
        past = batch.past_categories  # [B, k]
        hidden = self.encode(past)  # [B, k, d]
        user = self.user_state(hidden, past)  # [B, d]
        total = self._loss(self.category_logits(user), batch.targets[:, 1:])
        if self.training and self.causal and self.config.next_weight > 0 and past.shape[1] > 1:
            following = past[:, 1:]  # [B, k-1], the category after each position
            present = following != 0
            if present.any():
                states = hidden[:, :-1][present]  # [N, d]
                targets = F.one_hot(following[present] - 1, self.num_categories).float()
                total = total + self.config.next_weight * self._loss(
                    self.category_logits(states), targets)  # [N, C] rows
        return total
