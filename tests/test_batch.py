"""Item lists → the [B, k, P] item-profile tensor, and past-sequence truncation."""

from __future__ import annotations

import numpy as np
import torch

from ccrec.batch import ItemProfiles, item_profiles, pad_sequences


def test_pad_sequences_keeps_the_most_recent_values_left_aligned():
    out = pad_sequences([[3, 5, 2], [7], [], [1, 2, 3, 4, 5]], 4)
    assert out.tolist() == [[3, 5, 2, 0], [7, 0, 0, 0], [0, 0, 0, 0], [2, 3, 4, 5]]
    assert out.dtype == np.int64


def test_item_profiles_hand_computed():
    # P = 4 buckets, bucket of item i = (i - 1) mod 4
    past_items = [
        [[1, 2], [5], []],        # items 1 and 5 share bucket 0
        [[3, 3, 4]],              # a repeated item counts twice
        [],                       # no past at all
    ]
    out = item_profiles(past_items, max_past=3, profile_dim=4)
    expected = torch.zeros(3, 3, 4)
    expected[0, 0] = torch.tensor([0.5, 0.5, 0.0, 0.0])
    expected[0, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    expected[1, 0] = torch.tensor([0.0, 0.0, 2 / 3, 1 / 3])
    assert torch.allclose(out, expected)


def test_item_profiles_keep_the_last_k_interactions_like_the_categories():
    past_items = [[[1], [2], [3]]]
    out = item_profiles(past_items, max_past=2, profile_dim=4)
    # slots hold interactions 2 and 3, as pad_sequences keeps categories 2 and 3
    assert out[0].argmax(-1).tolist() == [1, 2]
    assert pad_sequences([[10, 20, 30]], 2).tolist() == [[20, 30]]


def test_dense_rows_and_single_interactions_match_the_whole_tensor():
    rng = np.random.default_rng(0)
    past_items = [[rng.integers(1, 30, rng.integers(0, 4)) for _ in range(rng.integers(0, 6))]
                  for _ in range(20)]
    whole = item_profiles(past_items, max_past=5, profile_dim=8)
    profiles = ItemProfiles.from_item_lists(past_items, 5, 8)
    rows = np.array([7, 3, 3, 19])
    assert torch.equal(profiles.dense(rows, 5), whole[rows])
    user, slot = np.nonzero(whole.sum(-1).numpy() > 0)
    single = profiles.interactions(user, slot).dense(np.arange(len(user)), 1)[:, 0]
    assert torch.equal(single, whole[user, slot])


def test_no_users_give_an_empty_tensor():
    assert item_profiles([], max_past=3, profile_dim=4).shape == (0, 3, 4)
