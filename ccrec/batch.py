"""Typed batches: one dataclass per kind of model input, each with ``.to(device)``.

Conventions shared by every batch:

* category indices are 1..C, 0 is padding; past sequences are oldest first and
  right-padded with 0 (``past_categories != 0`` is the mask);
* item profiles π are fixed-size, L1-normalised bags of a category
  interaction's items, hashed into ``profile_dim`` buckets
  (:func:`item_buckets`);
* targets are multi-hot over C+1 columns (column 0, padding, always 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def item_buckets(items: np.ndarray | Tensor, profile_dim: int) -> np.ndarray | Tensor:
    """The profile bucket of each item index (1..I): ``(item - 1) mod profile_dim``.

    With ``profile_dim >= I`` this is the identity (one bucket per item); with
    a large item vocabulary (Complete Journey: 68k items) several items share a
    bucket, the hashing trick. Item indices are arbitrary vocabulary positions,
    so the modulo spreads them evenly.
    """
    return (items - 1) % profile_dim


def item_profiles(
    item_lists: Sequence[Sequence[Sequence[int]]], slots: int, profile_dim: int
) -> Tensor:
    """[B, slots, P] float: the item profile π of each user's category interactions.

    ``item_lists[b][j]`` are the items (1..I) of user b's j-th category
    interaction; its profile is the L1-normalised bag of their buckets
    (:func:`item_buckets`) at ``[b, j]``. Interactions past ``slots`` are
    ignored; empty lists and missing slots stay all zero. Callers keep the
    same interactions here as in the past-category row they go with.
    """
    flat_rows, flat_items, weights = [], [], []
    for b, user in enumerate(item_lists):
        for j, items in enumerate(list(user)[:slots]):
            if len(items) == 0:
                continue
            flat_rows.append(np.full(len(items), b * slots + j, np.int64))
            flat_items.append(np.asarray(items, np.int64))
            weights.append(np.full(len(items), 1.0 / len(items), np.float32))
    out = torch.zeros(len(item_lists) * slots, profile_dim)
    if flat_rows:
        buckets = item_buckets(np.concatenate(flat_items), profile_dim)
        out.index_put_((torch.from_numpy(np.concatenate(flat_rows)), torch.from_numpy(buckets)),
                       torch.from_numpy(np.concatenate(weights)), accumulate=True)
    return out.view(len(item_lists), slots, profile_dim)


class _Movable:
    def to(self, device: torch.device | str):
        """A copy with every tensor moved to ``device`` (None fields stay None)."""
        moved = {
            f.name: (v.to(device) if isinstance(v := getattr(self, f.name), Tensor) else v)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
        }
        return dataclasses.replace(self, **moved)  # type: ignore[type-var]

    def __len__(self) -> int:
        first = getattr(self, dataclasses.fields(self)[0].name)  # type: ignore[arg-type]
        return int(first.shape[0])


@dataclass
class CategoryBatch(_Movable):
    """Users with their past, features and (for training/evaluation) future.

    Args:
        past_categories: [B, k] long, δ_t oldest first, 0-padded on the right.
        past_profiles: [B, k, P] float, π of each past category interaction.
        user_features: [B, F] long, one index per f_t column (0 = unknown).
        targets: [B, C+1] float, multi-hot future categories γ_t.
        rows: [B] long, the users' row numbers in their table.
    """

    past_categories: Tensor
    past_profiles: Tensor
    user_features: Tensor
    targets: Tensor
    rows: Tensor

    @property
    def mask(self) -> Tensor:
        """[B, k] bool, True where a past category interaction is present."""
        return self.past_categories != 0


@dataclass
class InteractionBatch(_Movable):
    """Single category interactions, the VAE's input rows.

    Args:
        user_features: [B, F] long, f_t of the interaction's user.
        profiles: [B, P] float, the interaction's item profile π.
        categories: [B] long, its category.
    """

    user_features: Tensor
    profiles: Tensor
    categories: Tensor


@dataclass
class CandidateBatch(_Movable):
    """Users with the stage-1 candidates r_t, the scorer's input.

    Args:
        past_categories: [B, k] long, δ_t as in :class:`CategoryBatch`.
        ci_embeddings: [B, k, E] float, the VAE embedding μ of each past
            category interaction (zeros at padding); E may be 0.
        candidates: [B, R] long, r_t (0 = padding where a user has fewer).
        candidate_m1: [B, R] float, y^{M1}: M1's probability of each candidate.
        labels: [B, R] float, y: 1 if the candidate is a future category.
        rows: [B] long, the users' row numbers in their table.
    """

    past_categories: Tensor
    ci_embeddings: Tensor
    candidates: Tensor
    candidate_m1: Tensor
    labels: Tensor
    rows: Tensor

    @property
    def candidate_mask(self) -> Tensor:
        """[B, R] bool, True for real (non-padding) candidates."""
        return self.candidates != 0
