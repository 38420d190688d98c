"""Tensorised splits and their DataLoaders.

A *table* holds one split as numpy arrays and builds a typed batch for any
list of row numbers (:meth:`batch`). :class:`TableDataset` exposes a table to
``torch.utils.data.DataLoader`` through ``__getitems__``, so a whole batch is
built in one vectorised call and any sampler (shuffling, seeded, or Ray's /
DDP's ``DistributedSampler``) can drive it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from ccrec.batch import (
    CandidateBatch,
    CategoryBatch,
    InteractionBatch,
    ItemProfiles,
    pad_sequences,
)


class Table(Protocol):
    def __len__(self) -> int: ...
    def batch(self, rows: np.ndarray) -> Any: ...


class UserTable:
    """One split of prepared examples, one row per user.

    Args:
        frame: rows of ``PreparedData.examples`` (one split).
        num_categories: |C|.
        max_past: k; longer pasts keep their most recent k interactions.
        profile_dim: P, the number of item-profile buckets.
    """

    def __init__(
        self, frame: pd.DataFrame, num_categories: int, max_past: int, profile_dim: int
    ) -> None:
        self.num_categories = num_categories
        self.max_past = max_past
        self.users = frame["user"].to_numpy()
        self.past_categories = pad_sequences(list(frame["past_categories"]), max_past)
        self.past_starts = pad_sequences(list(frame["past_starts"]), max_past)
        self.profiles = ItemProfiles.from_item_lists(list(frame["past_items"]), max_past,
                                                     profile_dim)
        self.user_features = np.stack(
            [np.asarray(f, dtype=np.int64) for f in frame["user_features"]]
        ) if len(frame) else np.zeros((0, 0), np.int64)
        self.future = [np.asarray(f, dtype=np.int64) for f in frame["future_categories"]]
        self.targets = np.zeros((len(frame), num_categories + 1), dtype=np.float32)
        for i, fut in enumerate(self.future):
            self.targets[i, fut] = 1.0

    def __len__(self) -> int:
        return len(self.users)

    @property
    def profile_dim(self) -> int:
        return self.profiles.profile_dim

    def batch(self, rows: np.ndarray) -> CategoryBatch:
        rows = np.asarray(rows, dtype=np.int64)
        return CategoryBatch(
            past_categories=torch.from_numpy(self.past_categories[rows]),
            past_profiles=self.profiles.dense(rows, self.max_past),
            user_features=torch.from_numpy(self.user_features[rows]),
            targets=torch.from_numpy(self.targets[rows]),
            rows=torch.from_numpy(rows),
        )

    def interactions(self) -> InteractionTable:
        """Each distinct past category interaction of these users, one row (VAE data).

        A user's rolling-origin examples share most of their past: one CI sits
        in the past of up to k of them, and what the VAE reads of it, (f_t, π,
        c), is the same in each, except that a CI still open at an origin
        (later events of it come after that origin) holds only its items so
        far. Events only accrue between origins, so a CI's item list at a later
        origin extends the earlier one and its length tells the versions
        apart. A row is therefore kept once per (user, f_t, CI start, category,
        number of items): each CI once, each open version of it once.
        """
        user_row, slot = np.nonzero(self.past_categories)
        group = np.repeat(np.arange(len(self.profiles)), self.profiles.ends - self.profiles.starts)
        items = np.zeros(self.past_categories.shape, np.int64)  # [N, k] items per CI
        np.add.at(items, (group, self.profiles.slots), 1)
        key = np.column_stack([
            self.users[user_row], self.user_features[user_row], self.past_starts[user_row, slot],
            self.past_categories[user_row, slot], items[user_row, slot],
        ])
        _, first = np.unique(key, axis=0, return_index=True)
        keep = np.sort(first)
        return InteractionTable(self, user_row[keep], slot[keep])


class InteractionTable:
    """Category interactions (user row, position) of a :class:`UserTable`."""

    def __init__(self, users: UserTable, user_row: np.ndarray, slot: np.ndarray) -> None:
        self.users, self.user_row, self.slot = users, user_row, slot
        self.profiles = users.profiles.interactions(user_row, slot)

    def __len__(self) -> int:
        return len(self.user_row)

    def batch(self, rows: np.ndarray) -> InteractionBatch:
        rows = np.asarray(rows, dtype=np.int64)
        user_row, slot = self.user_row[rows], self.slot[rows]
        return InteractionBatch(
            user_features=torch.from_numpy(self.users.user_features[user_row]),
            profiles=self.profiles.dense(rows, 1)[:, 0],
            categories=torch.from_numpy(self.users.past_categories[user_row, slot]),
        )


class CandidateTable:
    """Users with their stage-1 candidates and VAE embeddings (the scorer's data).

    Args:
        users: the split's :class:`UserTable`.
        candidates: [N, R] long candidate categories (0 = padding).
        candidate_m1: [N, R] float, M1's probability of each candidate.
        ci_embeddings: [N, k+1, E] float VAE embeddings of the profile (slot 0) and
            the past interactions.
    """

    def __init__(
        self,
        users: UserTable,
        candidates: np.ndarray,
        candidate_m1: np.ndarray,
        ci_embeddings: np.ndarray,
    ) -> None:
        self.users = users
        self.candidates = candidates.astype(np.int64)
        self.candidate_m1 = candidate_m1.astype(np.float32)
        self.ci_embeddings = ci_embeddings.astype(np.float32)
        self.labels = np.take_along_axis(users.targets, self.candidates, axis=1)
        self.labels[self.candidates == 0] = 0.0

    def __len__(self) -> int:
        return len(self.users)

    def batch(self, rows: np.ndarray) -> CandidateBatch:
        rows = np.asarray(rows, dtype=np.int64)
        return CandidateBatch(
            past_categories=torch.from_numpy(self.users.past_categories[rows]),
            ci_embeddings=torch.from_numpy(self.ci_embeddings[rows]),
            candidates=torch.from_numpy(self.candidates[rows]),
            candidate_m1=torch.from_numpy(self.candidate_m1[rows]),
            labels=torch.from_numpy(self.labels[rows]),
            rows=torch.from_numpy(rows),
        )


class TableDataset(torch.utils.data.Dataset):
    """A table as a map-style dataset whose ``__getitems__`` builds whole batches."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int):
        return self.table.batch(np.asarray([index]))

    def __getitems__(self, indices: list[int]):
        return self.table.batch(np.asarray(indices, dtype=np.int64))


def passthrough(batch: Any) -> Any:
    """The loaders' collate function: batches are already built by the table."""
    return batch


def make_loader(
    table: Table, batch_size: int, *, shuffle: bool, seed: int = 0, num_workers: int = 0
) -> torch.utils.data.DataLoader:
    """A seeded DataLoader over a table (its sampler can be swapped for DDP/Ray)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        TableDataset(table),
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=passthrough,
        generator=generator,
        num_workers=num_workers,
    )
