"""MeLU (Lee et al., KDD 2019) on synthetic users."""

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

from ccrec.baselines.melu import MeLU, MeLUConfig
from ccrec.baselines.paper import PAPER_BASELINES, DataSpec
from ccrec.models.base import TrainConfig
from ccrec.train.loop import Trainable

SMALL = MeLUConfig(embedding_dim=16, hidden=32)


def _fit(epochs: int, n: int, seed: int = 0, config: MeLUConfig = SMALL):
    train, test = make_table(n, "repeat", 0), make_table(150, "repeat", 2)
    torch.manual_seed(seed)
    tc = TrainConfig(epochs=epochs, batch_size=64, lr=1e-2, seed=seed, progress=False)
    model = MeLU(NUM_CATEGORIES, CARDINALITIES, config)
    Trainable(model, tc).fit(train)
    return model, test


def test_melu_adapts_to_each_user_and_never_ranks_padding():
    model, test = _fit(epochs=6, n=300)
    scores = scores_of(model, test)
    check_scores(scores, len(test))
    assert hit_metrics(scores, test)["HR@1"] > random_hit_metrics(test)["HR@1"] + 0.4


def test_melu_local_update_changes_the_scores():
    model, test = _fit(epochs=1, n=64)
    batch = test.batch(torch.arange(8).numpy())
    adapted = model.score(batch)
    model.config = MeLUConfig(embedding_dim=16, hidden=32, local_steps=0)
    assert not torch.allclose(adapted, model.score(batch))


def test_melu_second_order_meta_gradient_runs():
    model, _ = _fit(epochs=1, n=64, config=MeLUConfig(embedding_dim=16, hidden=32,
                                                      first_order=False))
    batch = make_table(16, "repeat", 3).batch(torch.arange(16).numpy())
    model.train()
    model.loss(batch).backward()
    assert model.fc1.weight.grad is not None and torch.isfinite(model.fc1.weight.grad).all()


def test_melu_is_deterministic_with_a_seed():
    a, test = _fit(epochs=2, n=100)
    b, _ = _fit(epochs=2, n=100)
    assert torch.equal(scores_of(a, test), scores_of(b, test))


def test_registry_builds_melu():
    spec = DataSpec(NUM_CATEGORIES, 4, PROFILE_DIM, tuple(CARDINALITIES))
    assert isinstance(PAPER_BASELINES["MeLU"](spec, None).model, MeLU)
