"""Layers shared by the cascade's stages and the baselines: pooling over a padded past."""

from __future__ import annotations

from torch import Tensor


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x [B, k, d] over the positions where mask [B, k] is True → [B, d]."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def last_present(x: Tensor, mask: Tensor) -> Tensor:
    """x [B, k, d] at each row's last True position of mask [B, k] → [B, d]."""
    last = (mask.sum(1) - 1).clamp(min=0)  # [B]
    return x.gather(1, last.view(-1, 1, 1).expand(-1, 1, x.shape[2])).squeeze(1)
