"""Cold start by profile: a newcomer with no past but a known f_t is answered by the
cascade from the VAE's profile embedding (M2's ``use_profile``), through a saved bundle."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from ccrec.bundle import Bundle, save_bundle
from ccrec.config import load
from ccrec.data.prepared import load_prepared
from ccrec.data.synthetic import FeatureCategory, write_synthetic
from ccrec.models.cascade import CascadeConfig
from ccrec.train.cascade import train_cascade

pytestmark = pytest.mark.slow

DEBUG = Path(__file__).parents[2] / "ccrec" / "configs" / "debug.yaml"
CARDS = (3, 4)  # f0 ∈ {1, 2}, f1 ∈ {1, 2, 3}: six profiles
C = 6


@pytest.fixture(scope="module")
def profile_bundle(tmp_path_factory):
    """A cascade trained where the future is set by f_t alone (FeatureCategory)."""
    root = tmp_path_factory.mktemp("profile")
    prepared = load_prepared(write_synthetic(
        root / "data", pattern=FeatureCategory(), num_users=480, num_categories=C,
        feature_cardinalities=CARDS, cold_every=0, seed=3))
    config = load(CascadeConfig, DEBUG, [
        "candidates.size=6", "train_sampler.epochs=1", "train_encoder.epochs=2",
        "train_scorer.epochs=3", "train_scorer.lr=0.02"])
    torch.manual_seed(0)
    model = train_cascade(prepared, config).model
    return save_bundle(model, config, prepared.vocab, root / "bundles", version="profile-1")


def test_newcomers_get_their_profile_category_not_popularity(profile_bundle):
    rec = Bundle.load(profile_bundle).recommender()
    assert rec.scores_profiles
    popular = int(rec.popularity()[1:].argmax()) + 1
    answers = {}
    for f0, f1 in itertools.product(range(1, CARDS[0]), range(1, CARDS[1])):
        expected = 1 + (5 * f0 + 3 * f1) % C  # FeatureCategory's rule, weights (5, 3)
        (top, _), = rec.recommend([], None, [f0, f1], k=1)
        answers[(f0, f1)] = top
        assert top == expected, (f0, f1)
    # 5 f0 + 3 f1 = 8, 11, 14, 13, 16, 19 → categories 3, 6, 3, 2, 5, 2
    assert sorted(answers.values()) == [2, 2, 3, 3, 5, 6]
    # popularity gives one answer to all six; at most two profiles share it
    assert sum(a != popular for a in answers.values()) >= 4

