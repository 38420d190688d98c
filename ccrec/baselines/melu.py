"""MeLU: meta-learned user preference estimation, with categories as items.

Paper: Lee, Im, Jang, Cho & Chung, "MeLU: Meta-Learned User Preference
Estimator for Cold-Start Recommendation", KDD 2019. CCRec paper §6.2 uses it
as the cold-start baseline ("trains a global model and then optimizes it
separately for each cold user").

Architecture (MeLU §3): the user embedding is the concatenation of one
embedding per user feature (f_t here), the item embedding is the category's
embedding; the decision layers are an MLP over [item; user] with a scalar
output. Per user (a MAML task, Finn et al. 2017):

* **local update**: on the user's support set — their past categories δ_t as
  positives and sampled other categories as negatives — a few SGD steps on
  the decision layers only (the embeddings stay global, as in MeLU);
* **global update**: the query loss of the adapted model on the user's future
  categories γ_t (every category labelled, positives vs. the rest) updates
  the embeddings and the decision layers' initialisation, across a batch of
  users.

Scores are the locally adapted model's outputs for that user. Every user's
adaptation runs at once: the decision-layer weights are expanded to one copy
per user, and the gradient of the summed per-user losses with respect to
those copies is exactly each user's own gradient.

Deviations (documented): ratings → implicit feedback, so MeLU's MSE becomes a
class-balanced binary cross-entropy (positives and negatives weigh ½ each);
its tiny learning rates (5e-5 / 5e-6 for ratings regression) become Adam
``lr`` from the train config and local SGD ``local_lr`` = 0.5 for logits; the
meta-gradient is first-order MAML by default (``first_order``; second order
is available and cheap here). At scoring time the support negatives are all
non-past categories (the expectation of the balanced sampled loss), so a
user's scores do not depend on the batch or a random draw. Sizes are MeLU's
(embeddings 32, decision layers 64-64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccrec.baselines.vaerec import PAD_SCORE, past_multi_hot
from ccrec.batch import CategoryBatch
from ccrec.models.base import NeuralRecommender


@dataclass(frozen=True)
class MeLUConfig:
    """Hyperparameters of MeLU.

    Args:
        embedding_dim: size of each feature / category embedding (MeLU: 32).
        hidden: width of the two decision layers (MeLU: 64).
        local_lr: SGD step size of the local update.
        local_steps: local updates per user (MeLU: 1–5).
        num_negatives: sampled negatives in a training support set.
        first_order: first-order MAML (no second derivatives through the local update).
    """

    embedding_dim: int = 32
    hidden: int = 64
    local_lr: float = 0.5
    local_steps: int = 3
    num_negatives: int = 20
    first_order: bool = True


def balanced_bce(logits: Tensor, labels: Tensor, valid: Tensor) -> Tensor:
    """Per-user BCE with positives and negatives weighing ½ each: [B].

    Args:
        logits: [B, N] decision outputs.
        labels: [B, N] float in {0, 1}.
        valid: [B, N] bool, entries that count.
    """
    v = valid.float()
    pos, neg = labels * v, (1 - labels) * v
    w = 0.5 * pos / pos.sum(-1, keepdim=True).clamp(min=1) \
        + 0.5 * neg / neg.sum(-1, keepdim=True).clamp(min=1)  # [B, N]
    return (F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * w).sum(-1)


class MeLU(NeuralRecommender):
    """MeLU over categories: global embeddings, per-user adapted decision layers.

    Paper: Lee et al., "MeLU: Meta-Learned User Preference Estimator for
    Cold-Start Recommendation", KDD 2019 (MAML: Finn et al., ICML 2017).

    Args:
        num_categories: |C| (scores have C+1 columns; column 0 is padding).
        feature_cardinalities: vocabulary size of each f_t column (0 = unknown).
        config: :class:`MeLUConfig`.
    """

    name = "MeLU"

    def __init__(
        self,
        num_categories: int,
        feature_cardinalities: list[int],
        config: MeLUConfig | None = None,
    ) -> None:
        super().__init__()
        config = config or MeLUConfig()
        self.config, self.num_categories = config, num_categories
        d = config.embedding_dim
        self.category_embedding = nn.Embedding(num_categories + 1, d, padding_idx=0)
        self.feature_embeddings = nn.ModuleList(nn.Embedding(n, d) for n in feature_cardinalities)
        d_in = d * (1 + max(len(feature_cardinalities), 1))
        # decision layers (adapted per user): [item; user] → h → h → 1
        self.fc1 = nn.Linear(d_in, config.hidden)
        self.fc2 = nn.Linear(config.hidden, config.hidden)
        self.out = nn.Linear(config.hidden, 1)

    # -- pieces -----------------------------------------------------------------
    def user_embedding(self, user_features: Tensor) -> Tensor:
        """[B, F] long f_t → [B, F·d] (zeros of size d when there are no features)."""
        if not self.feature_embeddings:
            return self.category_embedding.weight.new_zeros(
                user_features.shape[0], self.config.embedding_dim)
        return torch.cat([
            emb(user_features[:, i].clamp(0, emb.num_embeddings - 1))
            for i, emb in enumerate(self.feature_embeddings)
        ], -1)

    def inputs(self, user: Tensor, categories: Tensor) -> Tensor:
        """Decision-layer inputs [B, N, d_in] for user embeddings [B, U] and categories [B, N]."""
        items = self.category_embedding(categories)  # [B, N, d]
        return torch.cat([items, user.unsqueeze(1).expand(-1, categories.shape[1], -1)], -1)

    def global_weights(self, batch_size: int) -> list[Tensor]:
        """The decision layers' parameters, one (expanded) copy per user."""
        return [p.unsqueeze(0).expand(batch_size, *p.shape)
                for p in (self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias,
                          self.out.weight, self.out.bias)]

    @staticmethod
    def decide(x: Tensor, weights: list[Tensor]) -> Tensor:
        """Per-user decision MLP: x [B, N, d_in] with per-user weights → logits [B, N]."""
        w1, b1, w2, b2, w3, b3 = weights
        h = F.relu(torch.einsum("bni,bhi->bnh", x, w1) + b1.unsqueeze(1))  # [B, N, h]
        h = F.relu(torch.einsum("bni,bhi->bnh", h, w2) + b2.unsqueeze(1))  # [B, N, h]
        return torch.einsum("bni,boi->bno", h, w3).squeeze(-1) + b3  # [B, N]

    def adapt(self, x: Tensor, labels: Tensor, valid: Tensor) -> list[Tensor]:
        """Local update on a support set: ``local_steps`` SGD steps per user.

        Args:
            x: [B, N, d_in] support inputs; labels, valid: [B, N].
        Returns:
            the adapted per-user decision weights.
        """
        first_order = self.config.first_order or not torch.is_grad_enabled()
        weights = self.global_weights(x.shape[0])
        with torch.enable_grad():
            if first_order:
                x = x.detach()
            for _ in range(self.config.local_steps):
                if first_order:
                    fast = [w.detach().requires_grad_() for w in weights]
                else:
                    fast = weights
                loss = balanced_bce(self.decide(x, fast), labels, valid).sum()
                grads = torch.autograd.grad(loss, fast, create_graph=not first_order)
                weights = [w - self.config.local_lr * g for w, g in zip(weights, grads,
                                                                        strict=True)]
        return weights

    # -- support and query sets ---------------------------------------------------
    def support_set(self, past_categories: Tensor, sample: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Past categories as positives plus negatives: (categories, labels, valid), [B, N] each.

        With ``sample`` the negatives are ``num_negatives`` categories drawn
        uniformly (without replacement) from the non-past ones; otherwise every
        non-past category is a negative.
        """
        past = past_multi_hot(past_categories, self.num_categories)  # [B, C+1]
        if not sample:
            cats = torch.arange(1, self.num_categories + 1, device=past.device)
            cats = cats.expand(past.shape[0], -1)  # [B, C]
            return cats, past[:, 1:], torch.ones_like(cats, dtype=torch.bool)
        noise = torch.rand(past.shape, device=past.device)  # [B, C+1]
        noise = noise.masked_fill(past.bool(), -1.0)
        noise[:, 0] = -1.0
        n = min(self.config.num_negatives, self.num_categories)
        value, negatives = noise.topk(n, -1)  # [B, n]
        cats = torch.cat([past_categories, negatives], -1)  # [B, k + n]
        labels = torch.cat([(past_categories != 0).float(), torch.zeros_like(value)], -1)
        valid = torch.cat([past_categories != 0, value >= 0], -1)
        # a category repeated in δ_t counts once
        first = torch.ones_like(valid)
        k = past_categories.shape[1]
        same = past_categories.unsqueeze(2) == past_categories.unsqueeze(1)  # [B, k, k]
        first[:, :k] = ~(same & torch.ones(k, k, dtype=torch.bool, device=same.device)
                         .tril(-1)).any(-1)
        return cats, labels, valid & first

    def forward(self, batch: CategoryBatch, sample_support: bool = False) -> Tensor:
        # past_categories: [B, k]; user_features: [B, F]
        user = self.user_embedding(batch.user_features)  # [B, U]
        cats, labels, valid = self.support_set(batch.past_categories, sample_support)  # [B, N]
        weights = self.adapt(self.inputs(user, cats), labels, valid)
        all_cats = torch.arange(1, self.num_categories + 1, device=user.device)
        all_cats = all_cats.expand(user.shape[0], -1)  # [B, C]
        logits = self.decide(self.inputs(user, all_cats), weights)  # [B, C]
        pad = logits.new_full((logits.shape[0], 1), PAD_SCORE)
        return torch.cat([pad, logits], -1)  # [B, C+1]

    def loss(self, batch: CategoryBatch) -> Tensor:
        """Meta loss: the adapted model's balanced BCE on the future categories."""
        logits = self(batch, sample_support=self.training)[:, 1:]  # [B, C]
        valid = torch.ones_like(logits, dtype=torch.bool)
        return balanced_bce(logits, batch.targets[:, 1:], valid).mean()

    def score(self, batch: CategoryBatch) -> Tensor:
        """[B, C+1]: each user's locally adapted scores (column 0 lowest)."""
        with torch.no_grad():
            return self(batch, sample_support=False)
