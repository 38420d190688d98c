"""TIGER: generative retrieval over RQ-VAE semantic IDs, with categories as items.

Paper: Rajput, Mehta, Singh, Keshavan, Vu, Heldt, Hong, Tay, Tran, Samost,
Kula, Chi & Sathiamoorthy, "Recommender Systems with Generative Retrieval",
NeurIPS 2023. CCRec paper §6.2: "a generative retrieval-based solution that
leverages RQ-VAE to generate semantic IDs".

Pipeline (TIGER §3):

1. **Content embeddings.** TIGER encodes item text with Sentence-T5;
   categories have no text here, so a category's content embedding is its row
   of the truncated SVD of the positive PMI matrix of category co-occurrence
   in the training users' histories (past and future together), rows
   L2-normalised and columns standardised (rare categories otherwise sit
   near zero and collapse onto one code).
2. **Semantic IDs.** An RQ-VAE (MLP encoder → ``levels`` residual codebooks of
   ``codebook_size`` codes → MLP decoder; reconstruction + codebook +
   commitment losses, straight-through gradients, k-means initialised
   codebooks) maps each category to a code tuple; categories that collide get
   one extra code (0, 1, …) that makes the tuple unique (TIGER's dedup).
3. **Generation.** A Transformer encoder–decoder reads the past categories'
   semantic-ID tokens (oldest first) and generates the next tuple token by
   token, trained with teacher forcing on the user's future categories (a few
   sampled per user and step — multi-label targets).
4. **Ranking.** Beam search, constrained to valid tuples (a prefix trie),
   gives the top ``beam_size`` categories scored by their log-probability;
   every category the beam does not reach ranks below them, in the order of
   its training popularity (ties by index), so rankings are total and
   deterministic. Padding 0 ranks last.

Reductions for a CPU (documented): TIGER's 4+4 layers, d=128, 6 heads,
MLP 1024 and 3×256 codebooks become 2+2 layers, d=64, 4 heads, MLP 256 and
3×⌈√C⌉ codebooks (categories number tens to hundreds, not tens of
thousands); the RQ-VAE is 2-layer MLPs with a 16-d latent; no user-ID token;
2 sampled future categories per user and step; beam width 10 (top-5 metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccrec.baselines.vaerec import PAD_SCORE
from ccrec.batch import CategoryBatch
from ccrec.models.base import NeuralRecommender

#: Base score of categories the beam did not reach (popularity is added in (0, 1)).
UNREACHED_SCORE = -1e3
#: Decoder-side token ids.
PAD, BOS = 0, 1


@dataclass(frozen=True)
class TIGERConfig:
    """Hyperparameters of TIGER.

    Args:
        content_dim: size of the co-occurrence (PPMI-SVD) content embedding.
        levels: RQ-VAE codebook levels (TIGER: 3).
        codebook_size: codes per level (TIGER: 256); 0 = ⌈√C⌉ clamped to [4, 256],
            so the first level groups the categories into about √C clusters.
        rq_hidden: RQ-VAE MLP width.
        rq_latent: RQ-VAE latent size (TIGER: 32).
        rq_steps: full-batch Adam steps of the RQ-VAE.
        rq_lr: its learning rate.
        commitment: β of the commitment loss (TIGER: 0.25).
        d_model: Transformer width (TIGER: 128).
        n_heads: attention heads (TIGER: 6).
        n_layers: encoder and decoder layers each (TIGER: 4).
        ff_dim: feed-forward width (TIGER: 1024).
        dropout: Transformer dropout (TIGER: 0.1).
        targets_per_user: future categories sampled per user and step.
        beam_size: beam width at ranking time.
    """

    content_dim: int = 32
    levels: int = 3
    codebook_size: int = 0
    rq_hidden: int = 64
    rq_latent: int = 16
    rq_steps: int = 300
    rq_lr: float = 1e-3
    commitment: float = 0.25
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_dim: int = 256
    dropout: float = 0.1
    targets_per_user: int = 2
    beam_size: int = 10


# -- 1. content embeddings -------------------------------------------------------
def cooccurrence_embeddings(
    histories: list[np.ndarray], num_categories: int, dim: int
) -> Tensor:
    """PPMI-SVD embeddings of categories from the sets of categories users touched.

    Args:
        histories: per user, the categories (1..C) of their history.
        num_categories: |C|.
        dim: embedding size (at most C).
    Returns:
        [C, dim] float, row c-1 for category c (a category never seen gets zeros).
    """
    counts = np.zeros((num_categories, num_categories), dtype=np.float64)
    for cats in histories:
        u = np.unique(np.asarray(cats, dtype=np.int64))
        u = u[u > 0] - 1
        counts[np.ix_(u, u)] += 1.0
    total = counts.sum()
    row = counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts * total / (row * row.T))
    ppmi = np.nan_to_num(np.maximum(pmi, 0.0), nan=0.0, posinf=0.0, neginf=0.0)
    u, s, _ = np.linalg.svd(ppmi)
    dim = min(dim, num_categories)
    emb = u[:, :dim] * np.sqrt(s[:dim])
    emb = emb * np.sign(emb[np.abs(emb).argmax(0), np.arange(dim)])  # fix SVD signs
    return torch.tensor(emb, dtype=torch.float32)


# -- 2. RQ-VAE semantic IDs ----------------------------------------------------------
class RQVAE(nn.Module):
    """Residual-quantised autoencoder (TIGER §3.1; Zeghidour et al. 2021).

    Args:
        d_in: content-embedding size.
        config: :class:`TIGERConfig` (``rq_*``, ``levels``, ``codebook_size``, ``commitment``).
    """

    def __init__(self, d_in: int, config: TIGERConfig) -> None:
        super().__init__()
        self.config = config
        h, z = config.rq_hidden, config.rq_latent
        self.encoder = nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, z))
        self.decoder = nn.Sequential(nn.Linear(z, h), nn.ReLU(), nn.Linear(h, d_in))
        self.codebooks = nn.Parameter(torch.randn(config.levels, config.codebook_size, z) * 0.1)

    def quantise(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Residual quantisation of z [N, Z]: (codes [N, L], ẑ [N, Z], codebook loss)."""
        residual, quantised = z, torch.zeros_like(z)
        codes, loss = [], z.new_zeros(())
        for level in range(self.config.levels):
            book = self.codebooks[level]  # [K, Z]
            idx = torch.cdist(residual.detach(), book.detach()).argmin(-1)  # [N]
            e = book[idx]  # [N, Z]
            loss = loss + F.mse_loss(e, residual.detach()) \
                + self.config.commitment * F.mse_loss(residual, e.detach())
            quantised = quantised + e
            residual = residual - e.detach()
            codes.append(idx)
        return torch.stack(codes, -1), quantised, loss

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # x: [N, D] content embeddings
        z = self.encoder(x)  # [N, Z]
        codes, quantised, rq_loss = self.quantise(z)
        z_q = z + (quantised - z).detach()  # straight-through, [N, Z]
        recon = self.decoder(z_q)  # [N, D]
        return codes, F.mse_loss(recon, x) + rq_loss

    @torch.no_grad()
    def kmeans_init(self, x: Tensor, iterations: int = 10) -> None:
        """Initialise each level's codebook with k-means of that level's residuals."""
        residual = self.encoder(x)
        k = self.config.codebook_size
        for level in range(self.config.levels):
            centres = residual[torch.randperm(len(residual))[:k]]
            if len(centres) < k:  # fewer points than codes
                extra = residual[torch.randint(len(residual), (k - len(centres),))]
                centres = torch.cat([centres, extra + 1e-3 * torch.randn_like(extra)])
            for _ in range(iterations):
                assign = torch.cdist(residual, centres).argmin(-1)  # [N]
                counts = torch.bincount(assign, minlength=k).unsqueeze(1)  # [K, 1]
                sums = torch.zeros_like(centres).index_add_(0, assign, residual)  # [K, Z]
                centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
            self.codebooks[level] = centres
            residual = residual - centres[torch.cdist(residual, centres).argmin(-1)]

    def fit_codes(self, x: Tensor) -> Tensor:
        """Train on content embeddings x [C, D] (full batch) → codes [C, L]."""
        self.kmeans_init(x)
        optimizer = torch.optim.Adam(self.parameters(), lr=self.config.rq_lr)
        self.train()
        for _ in range(self.config.rq_steps):
            _, loss = self(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        self.eval()
        with torch.no_grad():
            codes, _ = self(x)
        return codes


def deduplicate(codes: Tensor) -> Tensor:
    """Append TIGER's collision code: [C, L] → [C, L+1], unique rows (order = index)."""
    seen: dict[tuple[int, ...], int] = {}
    extra = []
    for row in codes.tolist():
        key = tuple(row)
        extra.append(seen.get(key, 0))
        seen[key] = seen.get(key, 0) + 1
    return torch.cat([codes, torch.tensor(extra, dtype=codes.dtype).unsqueeze(1)], 1)


# -- 3. the sequence-to-sequence model ------------------------------------------------
class TIGER(NeuralRecommender):
    """Generative retrieval of the next category's semantic ID.

    Paper: Rajput et al., "Recommender Systems with Generative Retrieval",
    NeurIPS 2023 (see the module docstring for the reductions).

    Args:
        num_categories: |C| (scores have C+1 columns; column 0 is padding).
        max_past: k, the longest past sequence.
        config: :class:`TIGERConfig`.
    """

    name = "TIGER"

    def __init__(
        self,
        num_categories: int,
        max_past: int,
        config: TIGERConfig | None = None,
    ) -> None:
        super().__init__()
        config = config or TIGERConfig()
        self.config, self.num_categories, self.max_past = config, num_categories, max_past
        if config.codebook_size <= 0:
            config = replace(config, codebook_size=min(256, max(4, math.ceil(
                math.sqrt(num_categories)))))
            self.config = config
        self.id_len = config.levels + 1  # codes + dedup code
        # token ids: 0 pad, 1 BOS, level l code j → 2 + l·K + j, dedup code j → 2 + L·K + j
        self.offsets = [2 + level * config.codebook_size for level in range(config.levels)]
        self.offsets.append(2 + config.levels * config.codebook_size)
        self.vocab_size = self.offsets[-1] + num_categories  # collisions < C
        d = config.d_model
        self.rqvae = RQVAE(min(config.content_dim, num_categories), config)
        self.token = nn.Embedding(self.vocab_size, d, padding_idx=PAD)
        self.enc_position = nn.Embedding(max_past * self.id_len, d)
        self.dec_position = nn.Embedding(self.id_len + 1, d)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, config.n_heads, config.ff_dim, config.dropout,
                                       batch_first=True),
            config.n_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False,
        )
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(d, config.n_heads, config.ff_dim, config.dropout,
                                       batch_first=True),
            config.n_layers, norm=nn.LayerNorm(d),
        )
        self.head = nn.Linear(d, self.vocab_size)
        # semantic-ID tokens of each category (row 0: padding), set by prepare
        self.register_buffer("sem_tokens", torch.zeros(num_categories + 1, self.id_len,
                                                       dtype=torch.long))
        # fallback order of categories the beam misses: popularity in (0, 1)
        self.register_buffer("popularity", torch.zeros(num_categories + 1))

    # -- semantic IDs ------------------------------------------------------------
    def build_semantic_ids(self, train: Any) -> None:
        """Content embeddings → RQ-VAE → deduplicated token tuples, from a UserTable."""
        histories = [np.concatenate([p[p > 0], f]) for p, f in
                     zip(train.past_categories, train.future, strict=True)]
        content = F.normalize(cooccurrence_embeddings(
            histories, self.num_categories, self.config.content_dim), dim=-1)  # [C, D]
        content = (content - content.mean(0)) / content.std(0).clamp(min=1e-6)
        codes = deduplicate(self.rqvae.fit_codes(content))  # [C, L+1]
        offsets = torch.tensor(self.offsets)
        self.sem_tokens[1:] = codes + offsets
        self.sem_tokens[0] = PAD
        freq = np.bincount(np.concatenate(histories).astype(np.int64),
                           minlength=self.num_categories + 1)[: self.num_categories + 1]
        order = np.lexsort((-np.arange(len(freq)), freq))  # ascending popularity, ties: index
        rank = np.empty(len(freq))
        rank[order] = np.arange(len(freq))
        self.popularity.copy_(torch.tensor((rank + 1) / (len(freq) + 1), dtype=torch.float32))

    def prepare(self, train: Any) -> None:
        """Semantic IDs from the training users, before the Transformer trains."""
        self.build_semantic_ids(train)

    # -- encoder / decoder ---------------------------------------------------------
    def encode(self, past_categories: Tensor) -> tuple[Tensor, Tensor]:
        """Past categories [B, k] → memory [B, k·(L+1), d] and its padding mask."""
        tokens = self.sem_tokens[past_categories].flatten(1)  # [B, k·(L+1)]
        pad = tokens == PAD  # [B, k·(L+1)]
        pad = pad.clone()
        pad[:, 0] &= ~pad.all(1)  # an empty past attends to one padding token
        pos = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token(tokens) + self.enc_position(pos)  # [B, k·(L+1), d]
        return self.encoder(x, src_key_padding_mask=pad), pad

    def decode(self, memory: Tensor, memory_pad: Tensor, prefix: Tensor) -> Tensor:
        """Next-token logits for every position of ``prefix`` [N, s] (starts with BOS).

        memory: [N, m, d], memory_pad: [N, m] → logits [N, s, V].
        """
        s = prefix.shape[1]
        pos = torch.arange(s, device=prefix.device)
        y = self.token(prefix) + self.dec_position(pos)  # [N, s, d]
        causal = nn.Transformer.generate_square_subsequent_mask(s, device=prefix.device)
        h = self.decoder(y, memory, tgt_mask=causal, tgt_is_causal=True,
                                     memory_key_padding_mask=memory_pad)  # [N, s, d]
        return self.head(h)  # [N, s, V]

    def forward(self, past_categories: Tensor, target_categories: Tensor) -> Tensor:
        """Teacher-forced logits of each target's semantic ID.

        Args:
            past_categories: [B, k] long.
            target_categories: [B, T] long (0 = no target).
        Returns:
            [B, T, L+1, V] logits.
        """
        b, t = target_categories.shape
        memory, pad = self.encode(past_categories)  # [B, m, d], [B, m]
        target = self.sem_tokens[target_categories]  # [B, T, L+1]
        bos = torch.full((b, t, 1), BOS, dtype=torch.long, device=target.device)
        prefix = torch.cat([bos, target[..., :-1]], -1).flatten(0, 1)  # [B·T, L+1]
        memory = memory.repeat_interleave(t, 0)  # [B·T, m, d]
        pad = pad.repeat_interleave(t, 0)  # [B·T, m]
        return self.decode(memory, pad, prefix).view(b, t, self.id_len, -1)

    def sample_targets(self, targets: Tensor) -> Tensor:
        """Up to ``targets_per_user`` future categories per user, uniformly: [B, T]."""
        future = targets.clone()
        future[:, 0] = 0
        t = min(self.config.targets_per_user, self.num_categories)
        noise = torch.rand(future.shape, device=future.device).masked_fill(future == 0, -1.0)
        value, cats = noise.topk(t, -1)  # [B, T]
        return cats.masked_fill(value < 0, 0)

    def loss(self, batch: CategoryBatch) -> Tensor:
        cats = self.sample_targets(batch.targets)  # [B, T]
        logits = self(batch.past_categories, cats)  # [B, T, L+1, V]
        gold = self.sem_tokens[cats]  # [B, T, L+1] (0 where no target → ignored)
        return F.cross_entropy(logits.flatten(0, 2), gold.flatten(), ignore_index=PAD)

    # -- 4. ranking ------------------------------------------------------------------------
    @torch.no_grad()
    def beam_search(self, past_categories: Tensor) -> tuple[Tensor, Tensor]:
        """Constrained beam search: (categories [B, b], log-probabilities [B, b]).

        Beams that end on no valid tuple carry category 0 and -inf.
        """
        b_users = past_categories.shape[0]
        width = min(self.config.beam_size, self.num_categories)
        memory, pad = self.encode(past_categories)  # [B, m, d]
        valid = self.sem_tokens[1:]  # [C, L+1]
        prefix = torch.full((b_users, 1, 1), BOS, dtype=torch.long, device=memory.device)
        scores = torch.zeros(b_users, 1, device=memory.device)  # [B, beams]
        for step in range(self.id_len):
            beams = prefix.shape[1]
            logits = self.decode(memory.repeat_interleave(beams, 0),
                                 pad.repeat_interleave(beams, 0),
                                 prefix.flatten(0, 1))[:, -1]  # [B·beams, V]
            logits = logits.view(b_users, beams, -1)
            # allowed next tokens: those continuing a valid tuple (prefix trie)
            match = (prefix[:, :, 1:].unsqueeze(2) == valid[:, :step]).all(-1)  # [B, beams, C]
            nxt = valid[:, step].expand(b_users, beams, -1)  # [B, beams, C]
            allowed = torch.zeros(logits.shape, dtype=torch.long, device=logits.device)
            allowed = allowed.scatter_add_(-1, nxt, match.long()) > 0  # [B, beams, V]
            allowed[..., PAD] |= ~allowed.any(-1)  # a dead beam continues with padding
            logp = F.log_softmax(logits.masked_fill(~allowed, -math.inf), -1)  # [B, beams, V]
            total = (scores.unsqueeze(-1) + logp).flatten(1)  # [B, beams·V]
            k = min(width, total.shape[1])
            scores, flat = total.topk(k, -1)  # [B, k]
            parent, token = flat // logits.shape[-1], flat % logits.shape[-1]
            prefix = torch.cat([prefix.gather(1, parent.unsqueeze(-1).expand(
                -1, -1, prefix.shape[2])), token.unsqueeze(-1)], -1)  # [B, k, step+2]
        full = (prefix[:, :, 1:].unsqueeze(2) == valid).all(-1)  # [B, b, C]
        cats = torch.where(full.any(-1), full.float().argmax(-1) + 1, 0)  # [B, b]
        scores = scores.masked_fill(cats == 0, -math.inf)
        return cats, scores

    @torch.no_grad()
    def score(self, batch: CategoryBatch) -> Tensor:
        """[B, C+1]: beam log-probabilities; unreached below them by popularity; pad last."""
        was_training = self.training
        self.eval()
        cats, logp = self.beam_search(batch.past_categories)  # [B, b]
        self.train(was_training)
        out = (UNREACHED_SCORE + self.popularity).expand(len(cats), -1).clone()  # [B, C+1]
        ok = cats != 0
        rows = torch.arange(len(cats), device=cats.device).unsqueeze(1).expand_as(cats)
        out[rows[ok], cats[ok]] = logp[ok].clamp(min=UNREACHED_SCORE / 2)
        out[:, 0] = PAD_SCORE
        return out
