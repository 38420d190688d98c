"""Typed batch helpers: the item-profile tensor, hand-computed."""

from __future__ import annotations

import torch

from ccrec.batch import item_profiles


def test_item_profiles_are_hand_computed_bags():
    # P = 4: item i goes to bucket (i - 1) mod 4; slot 3 of user 1 is past `slots`
    got = item_profiles([[[1, 2], [5]], [[], [3, 3, 8, 4], [2], [1]]], slots=3, profile_dim=4)
    want = torch.zeros(2, 3, 4)
    want[0, 0, [0, 1]] = 0.5
    want[0, 1, 0] = 1.0
    want[1, 1] = torch.tensor([0.0, 0.0, 0.5, 0.5])  # 3, 3 → bucket 2; 8, 4 → bucket 3
    want[1, 2, 1] = 1.0
    assert torch.equal(got, want)


def test_no_items_give_zero_profiles():
    assert torch.equal(item_profiles([[], [[]]], slots=2, profile_dim=3), torch.zeros(2, 2, 3))
