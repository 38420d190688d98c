"""VAERec / VAERec+ (Wu et al., ICTIR 2020) on synthetic users."""

from __future__ import annotations

import torch
from paper_baseline_data import (
    CARDINALITIES,
    NUM_CATEGORIES,
    PROFILE_DIM,
    check_scores,
    hit_metrics,
    make_table,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    random_hit_metrics,
    scores_of,
)

from ccrec.baselines.paper import PAPER_BASELINES, DataSpec
from ccrec.baselines.vaerec import VAERec, VAERecConfig, vaerec_plus
from ccrec.models.base import CategoryRecommender, TrainConfig
from ccrec.train.loop import Trainable

SMALL = VAERecConfig(hidden=64, latent=16, anneal_steps=100)


def _fit(plus: bool, rule: str, epochs: int = 15, n: int = 400, seed: int = 0):
    train, test = make_table(n, rule, 0), make_table(150, rule, 2)
    torch.manual_seed(seed)
    tc = TrainConfig(epochs=epochs, batch_size=64, lr=1e-2, seed=seed, progress=False)
    build = vaerec_plus if plus else VAERec
    model = build(NUM_CATEGORIES, CARDINALITIES, PROFILE_DIM, SMALL)
    Trainable(model, tc).fit(train)
    return model, test


def test_vaerec_learns_past_to_future_and_never_ranks_padding():
    model, test = _fit(plus=False, rule="past")
    scores = scores_of(model, test)
    check_scores(scores, len(test))
    assert hit_metrics(scores, test)["HR@1"] > random_hit_metrics(test)["HR@1"] + 0.4


def test_vaerec_plus_uses_user_features():
    plain, test = _fit(plus=False, rule="features")
    plus, _ = _fit(plus=True, rule="features")
    assert plus.name == "VAERec+" and plain.name == "VAERec"
    hr_plain = hit_metrics(scores_of(plain, test), test)["HR@1"]
    hr_plus = hit_metrics(scores_of(plus, test), test)["HR@1"]
    assert hr_plus > hr_plain + 0.3
    assert hr_plus > random_hit_metrics(test)["HR@1"] + 0.4


def test_vaerec_is_deterministic_with_a_seed():
    a, test = _fit(plus=True, rule="past", epochs=2, n=100)
    b, _ = _fit(plus=True, rule="past", epochs=2, n=100)
    assert torch.equal(scores_of(a, test), scores_of(b, test))


def test_registry_builds_both_variants():
    spec = DataSpec(NUM_CATEGORIES, 4, PROFILE_DIM, tuple(CARDINALITIES))
    plain, plus = PAPER_BASELINES["VAERec"](spec, None), PAPER_BASELINES["VAERec+"](spec, None)
    assert isinstance(plain, CategoryRecommender) and isinstance(plus, CategoryRecommender)
    plain, plus = plain.model, plus.model
    assert not plain.config.use_user_features and plus.config.use_user_features
    # only the condition differs: VAERec+'s decoder also reads the one-hot f_t
    assert plus.decoder[0].in_features == plain.decoder[0].in_features + sum(CARDINALITIES)
