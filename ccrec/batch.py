"""Typed batches: one dataclass per kind of model input, each with ``.to(device)``.

Conventions shared by every batch:

* category indices are 1..C, 0 is padding; past sequences are oldest first and
  right-padded with 0 (``past_categories != 0`` is the mask);
* item profiles π are fixed-size, L1-normalised bags of a category
  interaction's items, hashed into ``profile_dim`` buckets
  (:func:`item_buckets`); :func:`item_profiles` builds the [B, k, P] tensor
  from item lists, for training tables and serving alike;
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


def pad_sequences(sequences: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """[N, width] long: each sequence's last ``width`` values, left-aligned, 0-padded.

    The one truncation rule of past sequences: the most recent ``width``
    category interactions are kept, oldest first (``[3, 5, 2]`` with width 2
    is ``[5, 2]``; with width 4, ``[3, 5, 2, 0]``).
    """
    out = np.zeros((len(sequences), width), dtype=np.int64)
    for i, seq in enumerate(sequences):
        kept = np.asarray(seq, dtype=np.int64)[max(len(seq) - width, 0):]
        out[i, : len(kept)] = kept
    return out


def pad_rows(rows: Sequence[Sequence[int]], width: int) -> Tensor:
    """[len(rows), width] long, each row left-aligned and 0-padded (rows fit ``width``)."""
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        if len(row):
            out[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
    return out


@dataclass
class ItemProfiles:
    """Item profiles π of many users' category interactions, kept sparse (CSR).

    Entries ``starts[g]:ends[g]`` are the (bucket, weight) pairs of group g (a
    user, or one interaction); ``slots`` tells a group's interactions apart.
    :meth:`dense` builds the [B, slots, P] tensor of any groups in one
    scatter, so a table of many users holds only their items.

    Args:
        buckets: [E] long, :func:`item_buckets` of each entry's item.
        weights: [E] float, 1 / (items in the entry's interaction).
        slots: [E] long, the entry's interaction within its group.
        starts, ends: [G] long, each group's entry range.
        profile_dim: P.
    """

    buckets: np.ndarray
    weights: np.ndarray
    slots: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    profile_dim: int

    @classmethod
    def from_item_lists(cls, past_items: Sequence[Sequence[Sequence[int]]], max_past: int,
                        profile_dim: int) -> ItemProfiles:
        """One group per user: the items of the user's last ``max_past`` interactions.

        Slot j holds the j-th kept interaction, oldest first, so it lines up
        with :func:`pad_sequences` of the same user's past categories.
        """
        kept = [list(user)[max(len(user) - max_past, 0):] for user in past_items]
        ci_items = [np.asarray(items, np.int64) for user in kept for items in user]
        sizes = np.asarray([len(items) for items in ci_items], np.int64)  # [CIs]
        cis_per_user = np.asarray([len(user) for user in kept], np.int64)  # [G]
        slot_of_ci = np.arange(len(ci_items)) - np.repeat(
            np.cumsum(cis_per_user) - cis_per_user, cis_per_user)  # [CIs]
        entries = np.bincount(np.repeat(np.arange(len(kept)), cis_per_user), weights=sizes,
                              minlength=len(kept)).astype(np.int64)  # [G]
        ends = np.cumsum(entries)
        items = np.concatenate(ci_items) if ci_items else np.zeros(0, np.int64)
        with np.errstate(divide="ignore"):  # an empty interaction has no entries to weigh
            weight_of_ci = (1.0 / sizes).astype(np.float32)
        return cls(
            buckets=np.asarray(item_buckets(items, profile_dim), np.int64),
            weights=np.repeat(weight_of_ci, sizes),
            slots=np.repeat(slot_of_ci, sizes),
            starts=ends - entries,
            ends=ends,
            profile_dim=profile_dim,
        )

    def __len__(self) -> int:
        return len(self.starts)

    def dense(self, groups: np.ndarray, slots_per_group: int) -> Tensor:
        """[len(groups), slots_per_group, P] float profiles of the given groups."""
        starts, ends = self.starts[groups], self.ends[groups]
        lengths = ends - starts
        total = int(lengths.sum())
        offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        idx = offsets + np.arange(total)
        local = np.repeat(np.arange(len(groups)), lengths)
        out = torch.zeros(len(groups) * slots_per_group, self.profile_dim)
        out.index_put_(
            (torch.from_numpy(local * slots_per_group + self.slots[idx]),
             torch.from_numpy(self.buckets[idx])),
            torch.from_numpy(self.weights[idx]),
            accumulate=True,
        )
        return out.view(len(groups), slots_per_group, self.profile_dim)

    def interactions(self, group: np.ndarray, slot: np.ndarray) -> ItemProfiles:
        """One group per (group, slot) pair: the profiles of single interactions."""
        entry_group = np.repeat(np.arange(len(self)), self.ends - self.starts)
        width = int(self.slots.max()) + 1 if len(self.slots) else 1
        key = entry_group * width + self.slots
        order = np.argsort(key, kind="stable")
        sorted_keys = key[order]
        wanted = np.asarray(group, np.int64) * width + np.asarray(slot, np.int64)
        return ItemProfiles(
            buckets=self.buckets[order], weights=self.weights[order],
            slots=np.zeros(len(order), np.int64),
            starts=np.searchsorted(sorted_keys, wanted, side="left").astype(np.int64),
            ends=np.searchsorted(sorted_keys, wanted, side="right").astype(np.int64),
            profile_dim=self.profile_dim,
        )


def item_profiles(past_items: Sequence[Sequence[Sequence[int]]], max_past: int,
                  profile_dim: int) -> Tensor:
    """[B, max_past, P] float item profiles π of B users' past category interactions.

    Args:
        past_items: per user, the item indices (1..I) of each past category
            interaction, oldest first.
        max_past: k; a longer past keeps its last k interactions, as
            :func:`pad_sequences` does with the past categories.
        profile_dim: P, the number of buckets (:func:`item_buckets`).

    Slot j of a user is the L1-normalised bag of the j-th kept interaction's
    items (1/n per item, summed where items share a bucket); empty
    interactions and padding slots are all zeros.
    """
    profiles = ItemProfiles.from_item_lists(past_items, max_past, profile_dim)
    return profiles.dense(np.arange(len(profiles)), max_past)


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
        ci_embeddings: [B, k+1, E] float, the VAE embedding μ of the user's
            profile (slot 0) and of each past category interaction (slots 1..k,
            zeros at padding); E may be 0.
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
