"""CLRec with categories as items (paper §6.2 baseline).

Paper: C. Zhou, J. Ma, J. Zhang, J. Zhou and H. Yang, "Contrastive Learning
for Debiased Candidate Generation in Large-Scale Recommender Systems", KDD
2021 (https://arxiv.org/abs/2005.12964).

A two-tower candidate generator trained with InfoNCE: the user tower encodes
the past category sequence (SASRec's causal self-attention blocks,
:class:`~ccrec.baselines.sasrec.CausalSelfAttentionEncoder`, state at the
last present position), the item tower is the category embedding; both are
L2-normalised and compared by cosine / τ. The negatives of a user's positive
are the other users' positives in the batch plus a FIFO queue of the positive
category embeddings of previous batches (detached, as CLRec's queue, MoCo
style without a momentum encoder, which CLRec found unnecessary). Queue and
in-batch entries with the positive's own category are masked out (with |C| in
the tens to hundreds, duplicates are frequent and would be false negatives).

Adaptation: the positive of each user in a training step is one of the user's
future categories γ_t, drawn uniformly (a fresh draw every step). In eval mode
(the early-stopping validation loss) the loss is the deterministic full-softmax
NLL of all future categories over the cosine / τ scores, not InfoNCE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ccrec.baselines.sasrec import CausalSelfAttentionEncoder
from ccrec.baselines.sequential import SequenceConfig, SequentialRecommender, softmax_loss
from ccrec.batch import CategoryBatch


@dataclass(frozen=True)
class CLRecConfig(SequenceConfig):
    """CLRec's hyperparameters (see :class:`SequenceConfig` for the shared ones;
    ``loss``, ``num_negatives`` and ``next_weight`` are not used).

    Args:
        n_heads: attention heads of the user tower.
        queue_size: negatives kept from previous batches.
        temperature: τ of the InfoNCE softmax.
    """

    n_heads: int = 1
    queue_size: int = 1024
    temperature: float = 0.1


class CLRec(SequentialRecommender):
    """CLRec (Zhou et al., KDD 2021): contrastive two-tower with a negative queue.

    Args:
        num_categories: |C|.
        max_len: k, the longest past sequence.
        config: :class:`CLRecConfig` (defaults: d=64, 2 blocks, queue 1024, τ=0.1).
    """

    name = "CLRec"

    def __init__(self, num_categories: int, max_len: int, config: CLRecConfig | None = None
                 ) -> None:
        config = config or CLRecConfig()
        super().__init__(num_categories, max_len, config)
        self.encoder = CausalSelfAttentionEncoder(
            config.d_model, config.n_heads, config.n_layers, max_len, config.dropout)
        # the FIFO queue: embeddings of past positives and their categories (0 = empty)
        self.register_buffer("queue", torch.zeros(config.queue_size, config.d_model),
                             persistent=False)
        self.register_buffer("queue_ids", torch.zeros(config.queue_size, dtype=torch.long),
                             persistent=False)
        self.queue_next = 0

    def reset_queue(self) -> None:
        """Empty the negative queue (done before every training run)."""
        self.queue.zero_()
        self.queue_ids.zero_()
        self.queue_next = 0

    def prepare(self, train) -> None:
        self.reset_queue()

    def encode(self, past_categories: Tensor) -> Tensor:
        # past_categories: [B, k] long, 0 = padding
        x = self.item_embedding(past_categories) * math.sqrt(self.config.d_model)  # [B, k, d]
        return self.encoder(x, past_categories != 0)  # [B, k, d]

    def user_state(self, hidden: Tensor, past_categories: Tensor) -> Tensor:
        # hidden: [B, k, d] → L2-normalised state at the last present position [B, d]
        return F.normalize(super().user_state(hidden, past_categories), dim=-1)

    def category_logits(self, hidden: Tensor) -> Tensor:
        # hidden: [..., d] normalised → cosine / τ with categories 1..C: [..., C]
        items = F.normalize(self.item_embedding.weight[1:], dim=-1)  # [C, d]
        return hidden @ items.T / self.config.temperature

    @torch.no_grad()
    def _enqueue(self, embeddings: Tensor, ids: Tensor) -> None:
        # embeddings: [B, d], ids: [B]; overwrite the oldest entries
        size = self.queue.shape[0]
        n = min(len(ids), size)
        slots = (self.queue_next + torch.arange(n, device=ids.device)) % size
        self.queue[slots] = embeddings[-n:]
        self.queue_ids[slots] = ids[-n:]
        self.queue_next = (self.queue_next + n) % size

    def loss(self, batch: CategoryBatch) -> Tensor:
        past, targets = batch.past_categories, batch.targets[:, 1:]  # [B, k], [B, C]
        user = self.user_state(self.encode(past), past)  # [B, d]
        if not self.training:
            return softmax_loss(self.category_logits(user), targets)
        has_future = targets.sum(1) > 0
        user, targets = user[has_future], targets[has_future]
        positive = torch.multinomial(targets, 1).squeeze(1) + 1  # [B'] one γ_t each
        items = F.normalize(self.item_embedding(positive), dim=-1)  # [B', d]
        candidates = torch.cat([items, self.queue])  # [B' + Q, d]
        ids = torch.cat([positive, self.queue_ids])  # [B' + Q]
        logits = user @ candidates.T / self.config.temperature  # [B', B' + Q]
        rows = torch.arange(len(positive), device=past.device)
        # mask empty queue slots and other copies of each row's own positive category
        false_negative = (ids.unsqueeze(0) == positive.unsqueeze(1)) | (ids == 0).unsqueeze(0)
        false_negative[rows, rows] = False
        loss = F.cross_entropy(logits.masked_fill(false_negative, -math.inf), rows)
        self._enqueue(items.detach(), positive)
        return loss
