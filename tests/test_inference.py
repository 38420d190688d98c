"""The traced cascade answers exactly as the eager one, and a stage that cannot be traced
faithfully stays eager."""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from torch import nn

from ccrec.bundle import CascadeRecommender, UserRequest
from ccrec.config import load
from ccrec.inference import _trace
from ccrec.models.cascade import CascadeConfig, CCRec
from ccrec.models.encoder import CategoryVAE
from ccrec.models.sampler import MLESampler
from ccrec.models.scorer import PrecisionScorer
from tests.serve.untrained import DEBUG_CONFIG

ML1M_CONFIG = DEBUG_CONFIG.with_name("ml-1m.yaml")
C, CARDS, ITEMS = 9, {"age": ["?", "a", "b"], "job": ["?", "x", "y", "z"]}, 60


def _recommenders(use_vae: bool = True, config_path=DEBUG_CONFIG
                  ) -> tuple[CascadeRecommender, CascadeRecommender]:
    config = load(CascadeConfig, config_path, [])
    config = dataclasses.replace(config, scorer=dataclasses.replace(config.scorer,
                                                                    use_vae=use_vae))
    torch.manual_seed(3)
    encoder = CategoryVAE([len(v) for v in CARDS.values()], C, config.encoder)
    model = CCRec(MLESampler(C, config.max_past, config.sampler), encoder if use_vae else None,
                  PrecisionScorer(C, encoder.latent_dim if use_vae else 0, config.scorer),
                  config.candidates).eval()
    vocab = {"categories": [""] + [f"c{i}" for i in range(1, C + 1)], "user_features": CARDS,
             "num_items": ITEMS}
    return (CascadeRecommender(model, vocab, config, fast=True),
            CascadeRecommender(model, vocab, config, fast=False))


def _users(n: int, seed: int = 0) -> list[UserRequest]:
    """Pasts of every length from 1 to beyond k, item lists, features (0 = unknown)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        past = [rng.randint(1, C) for _ in range(1 + i % 8)]
        items = [[rng.randint(1, ITEMS) for _ in range(rng.randint(0, 4))] for _ in past]
        out.append(UserRequest(past, items, [rng.randint(0, 2), rng.randint(0, 3)]))
    return out


@pytest.mark.parametrize(("use_vae", "config"), [(True, DEBUG_CONFIG), (False, DEBUG_CONFIG),
                                                 (True, ML1M_CONFIG)], ids=["debug", "no-vae",
                                                                            "ml-1m-size"])
def test_traced_cascade_answers_bit_for_bit_as_the_eager_one(use_vae, config):
    fast, eager = _recommenders(use_vae, config)  # ML-1M's sizes: other matrix kernels
    assert set(fast.stages.traced) == {"shortlist", "scorer", "cascade"} | (
        {"embed"} if use_vae else set())
    assert eager.stages.traced == ()
    users = _users(24)
    for batch in ([users[0]], users[:5], users):  # one user, a small and a full batch
        assert torch.equal(fast.scores(batch), eager.scores(batch))
        k = [1 + i % 4 for i in range(len(batch))]
        exclude = [{batch[i].past_categories[0]} if i % 3 == 0 else set()
                   for i in range(len(batch))]
        sampled = fast.sample(batch, k, exclude)
        assert sampled == eager.sample(batch, k, exclude)
        assert fast.score(batch, sampled, k) == eager.score(batch, sampled, k)
    for user in users:
        assert fast.recommend(user.past_categories, user.past_items, user.user_features, k=4,
                              exclude=[3]) == \
            eager.recommend(user.past_categories, user.past_items, user.user_features, k=4,
                            exclude=[3])


def test_cached_embeddings_answer_as_computed_ones_and_are_reused():
    fast, eager = _recommenders()
    users = _users(12, seed=1)
    cache = fast.embeddings
    assert torch.equal(fast.scores(users[:6]), eager.scores(users[:6]))  # computed
    assert (cache.hits, cache.misses) == (0, 6)
    assert torch.equal(fast.scores(users), eager.scores(users))  # half held, half new
    assert (cache.hits, cache.misses) == (6, 12)
    for user in users:  # one user at a time, all held
        assert torch.equal(fast.scores([user]), eager.scores([user]))
    assert (cache.hits, cache.misses) == (18, 12)
    # a click adds an item to the newest CI: that user is embedded again
    user = users[3]
    clicked = UserRequest(user.past_categories, [*user.past_items[:-1],
                                                 [*user.past_items[-1], 7]], user.user_features)
    assert torch.equal(fast.scores([clicked]), eager.scores([clicked]))
    assert cache.misses == 13
    # ... and so is a user whose features changed
    moved = UserRequest(user.past_categories, user.past_items, [(user.user_features[0] + 1) % 3,
                                                                user.user_features[1]])
    assert torch.equal(fast.scores([moved]), eager.scores([moved]))
    assert cache.misses == 14
    empty = UserRequest([], [], [1, 1])  # no CI: the profile alone is embedded
    assert torch.equal(fast.scores([empty]), eager.scores([empty]))


def test_the_cache_drops_the_least_recently_used_rows():
    fast, eager = _recommenders()
    fast.embeddings.size = 4
    users = _users(6, seed=2)
    for user in users:
        assert torch.equal(fast.scores([user]), eager.scores([user]))
        assert len(fast.embeddings.rows) <= 4
    assert torch.equal(fast.scores(users), eager.scores(users))  # more new CIs than it holds


class _Branchy(nn.Module):
    """A forward whose Python branch on the data a trace would freeze."""

    def forward(self, x):
        return x * 2 if bool(x.sum() > 0) else x * 3


class _Broken(nn.Module):
    def forward(self, x):
        raise ValueError("no")


def test_a_stage_whose_trace_does_not_generalise_stays_eager(caplog):
    probes = [(torch.ones(2, 3),), (-torch.ones(4, 3),)]
    assert _trace("branchy", _Branchy(), probes) is None
    assert "differs from the eager one" in caplog.text
    assert _trace("broken", _Broken(), probes) is None
    assert "could not be traced (ValueError: no)" in caplog.text
    graph = _trace("double", _Branchy(), [(torch.ones(2, 3),), (torch.full((5, 1), 2.0),)])
    assert graph is not None
    assert torch.equal(graph(torch.full((1, 2), 3.0)), torch.full((1, 2), 6.0))
