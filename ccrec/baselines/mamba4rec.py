"""Mamba4Rec with categories as items (paper §6.2 baseline), in plain PyTorch.

Paper: C. Liu, J. Lin, J. Wang, H. Liu and J. Caverlee, "Mamba4Rec: Towards
Efficient Sequential Recommendation with Selective State Space Models", 2024
(https://arxiv.org/abs/2403.03900); its Mamba block is from A. Gu and T. Dao,
"Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023
(https://arxiv.org/abs/2312.00752).

Architecture as in the authors' RecBole code: item embedding → dropout →
LayerNorm (no positional embedding: the scan is ordered); each layer is a
Mamba block → dropout → LayerNorm (with the residual when there is more than
one layer) → feed-forward (4·d GELU MLP, dropout, LayerNorm with residual);
the state at the last present position scores every item against the item
embedding; full softmax cross-entropy.

The Mamba block is written out instead of calling the CUDA kernels of
``mamba_ssm``: input projection to x and the gate z, depthwise causal conv1d
and SiLU on x, input-dependent Δ (softplus of a low-rank projection), B and
C, the zero-order-hold discretisation Ā = exp(ΔA), B̄x = ΔBx, an explicit
sequential scan h_t = Ā_t h_{t-1} + B̄_t x_t, y_t = C_t h_t + D x_t, gating by
SiLU(z) and an output projection. With k = 10 the Python loop over time is
cheap. Training also predicts the next category at every past position (the
scan is causal), on right-padded sequences as in RecBole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ccrec.baselines.sequential import FeedForward, SequenceConfig, SequentialRecommender


@dataclass(frozen=True)
class Mamba4RecConfig(SequenceConfig):
    """Mamba4Rec's hyperparameters (see :class:`SequenceConfig` for the shared ones).

    Args:
        d_state: SSM state size N (paper: 32).
        d_conv: causal convolution width (paper: 4).
        expand: inner width = expand · d_model (paper: 2).
    """

    n_layers: int = 1
    d_state: int = 32
    d_conv: int = 4
    expand: int = 2


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Tensor) -> Tensor:
    """The selective SSM recurrence, one step per position.

    Args:
        u: [Bt, L, E] inputs x.
        delta: [Bt, L, E] step sizes Δ (positive).
        A: [E, N] state matrix (negative, diagonal per channel).
        B: [Bt, L, N] input matrices.
        C: [Bt, L, N] output matrices.
        D: [E] skip connection.
    Returns:
        y: [Bt, L, E].
    """
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])  # [Bt, E, N]
    ys = []
    # per-step slices via unbind: indexing a [Bt, L, E, N] tensor in the loop would
    # make autograd build a full-size zero gradient per step
    for u_t, d_t, b_t, c_t in zip(u.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1),
                                  strict=True):
        d_t = d_t.unsqueeze(-1)  # [Bt, E, 1]
        h = torch.exp(d_t * A) * h + d_t * b_t.unsqueeze(1) * u_t.unsqueeze(-1)  # [Bt, E, N]
        ys.append(torch.bmm(h, c_t.unsqueeze(-1)).squeeze(-1))  # [Bt, E], C_t h_t
    return torch.stack(ys, 1) + u * D  # [Bt, L, E]


class MambaBlock(nn.Module):
    """A Mamba block (Gu & Dao 2023) with an explicit selective scan.

    Args:
        d_model: input/output size.
        d_state: SSM state size N.
        d_conv: depthwise causal convolution width.
        expand: inner width E = expand · d_model.
        dt_min, dt_max: range of the initial step sizes Δ.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        super().__init__()
        inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        self.d_state = d_state
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, inner)
        # Δ starts log-uniform in [dt_min, dt_max]: bias = softplus⁻¹(Δ0) (as mamba_ssm)
        dt = torch.exp(torch.rand(inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real initialisation A = −(1..N) per channel, stored as log(−A)
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(inner, 1)  # [E, N]
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, L, d]
        length = x.shape[1]
        u, z = self.in_proj(x).chunk(2, -1)  # [B, L, E] each
        u = self.conv(u.transpose(1, 2))[..., :length].transpose(1, 2)  # [B, L, E], causal
        u = F.silu(u)
        dt, B, C = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], -1)
        delta = F.softplus(self.dt_proj(dt))  # [B, L, E]
        A = -torch.exp(self.A_log)  # [E, N]
        y = selective_scan(u, delta, A, B, C, self.D)  # [B, L, E]
        return self.out_proj(y * F.silu(z))  # [B, L, d]


class MambaLayer(nn.Module):
    """Mamba4Rec's layer: Mamba → dropout → LayerNorm (+ residual) → feed-forward.

    Args:
        d_model: hidden size.
        d_state, d_conv, expand: the Mamba block's sizes.
        dropout: dropout rate.
        residual: add the input before the LayerNorm (the authors do so when
            there is more than one layer).
    """

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int, dropout: float,
                 residual: bool) -> None:
        super().__init__()
        self.mamba = MambaBlock(d_model, d_state, d_conv, expand)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model, eps=1e-12)
        self.ffn = FeedForward(d_model, 4 * d_model, dropout)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        # x: [B, L, d] → [B, L, d]
        h = self.dropout(self.mamba(x))
        h = self.norm(h + x if self.residual else h)
        return self.ffn(h)


class Mamba4Rec(SequentialRecommender):
    """Mamba4Rec (Liu et al. 2024) over the past category sequence.

    Args:
        num_categories: |C|.
        max_len: k, the longest past sequence.
        config: :class:`Mamba4RecConfig` (defaults: d=64, 1 layer, N=32,
            conv 4, expand 2, dropout 0.2 — the paper's).
    """

    name = "Mamba4Rec"

    def __init__(self, num_categories: int, max_len: int,
                 config: Mamba4RecConfig | None = None) -> None:
        config = config or Mamba4RecConfig()
        super().__init__(num_categories, max_len, config)
        d = config.d_model
        self.dropout = nn.Dropout(config.dropout)
        self.norm = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(
            MambaLayer(d, config.d_state, config.d_conv, config.expand, config.dropout,
                       residual=config.n_layers > 1)
            for _ in range(config.n_layers))

    def encode(self, past_categories: Tensor) -> Tensor:
        # past_categories: [B, k] long, right-padded (the scan never reads later padding)
        x = self.norm(self.dropout(self.item_embedding(past_categories)))  # [B, k, d]
        for layer in self.layers:
            x = layer(x)  # [B, k, d]
        return x
