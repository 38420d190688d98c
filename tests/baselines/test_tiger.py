"""TIGER (Rajput et al., NeurIPS 2023) on synthetic users."""

from __future__ import annotations

import torch
from paper_baseline_data import (
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
from ccrec.baselines.tiger import TIGER, UNREACHED_SCORE, TIGERConfig, deduplicate
from ccrec.models.base import TrainConfig
from ccrec.train.loop import Trainable

MAX_PAST = 4
SMALL = TIGERConfig(d_model=32, ff_dim=64, n_layers=1, codebook_size=4, rq_steps=50,
                    targets_per_user=2, beam_size=5)


def _fit(epochs: int, n: int, seed: int = 0):
    train, test = make_table(n, "past", 0), make_table(150, "past", 2)
    torch.manual_seed(seed)
    tc = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=seed, progress=False)
    model = TIGER(NUM_CATEGORIES, MAX_PAST, SMALL)
    Trainable(model, tc).fit(train)
    return model, test


def test_deduplicate_appends_a_collision_code():
    codes = torch.tensor([[1, 2], [1, 2], [0, 3], [1, 2]])
    assert deduplicate(codes).tolist() == [[1, 2, 0], [1, 2, 1], [0, 3, 0], [1, 2, 2]]


def test_tiger_generates_future_semantic_ids_and_ranks_deterministically():
    model, test = _fit(epochs=10, n=500)
    ids = model.sem_tokens[1:]
    assert len({tuple(r) for r in ids.tolist()}) == NUM_CATEGORIES  # unique semantic IDs
    scores = scores_of(model, test)
    check_scores(scores, len(test))
    assert hit_metrics(scores, test)["HR@1"] > random_hit_metrics(test)["HR@1"] + 0.4
    # the beam reaches beam_size categories; the others rank below them, by popularity
    reached = scores[:, 1:] > UNREACHED_SCORE / 2
    assert (reached.sum(1) == SMALL.beam_size).all()
    unreached = torch.where(reached, torch.nan, scores[:, 1:] - UNREACHED_SCORE)
    expected = model.popularity[1:].expand_as(unreached)
    assert torch.allclose(unreached.nan_to_num(), torch.where(reached, 0.0, expected), atol=1e-3)


def test_tiger_is_deterministic_with_a_seed():
    a, test = _fit(epochs=1, n=100)
    b, _ = _fit(epochs=1, n=100)
    assert torch.equal(a.sem_tokens, b.sem_tokens)
    assert torch.equal(scores_of(a, test), scores_of(b, test))


def test_registry_builds_tiger():
    spec = DataSpec(NUM_CATEGORIES, MAX_PAST, PROFILE_DIM, ())
    assert isinstance(PAPER_BASELINES["TIGER"](spec, None).model, TIGER)
