"""SASRec, FMLPRec, Mamba4Rec and CLRec on a synthetic next-category pattern.

Each user's past is a run of consecutive categories c, c+1, … (cyclic over
|C|) and their one future category is the next one in the run, so a sequence
model can reach HR@1 ≈ 1 while a random ranking gets 1/|C|.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccrec.baselines.clrec import CLRec, CLRecConfig
from ccrec.baselines.fmlprec import FMLPRec, FMLPRecConfig
from ccrec.baselines.mamba4rec import Mamba4Rec, Mamba4RecConfig
from ccrec.baselines.paper import PAPER_BASELINES, DataSpec
from ccrec.baselines.sasrec import SASRec, SASRecConfig
from ccrec.baselines.sequential import right_align
from ccrec.data.synthetic import CategoryRun, SyntheticConfig, generate
from ccrec.data.tables import UserTable
from ccrec.metrics import ranking_metrics
from ccrec.models.base import CategoryRecommender, TrainConfig
from ccrec.train.loop import Trainable

C, K, PROFILE_DIM = 12, 8, 16
TRAIN = TrainConfig(epochs=6, batch_size=64, lr=1e-2, progress=False, seed=0)


def pattern_table(users: int, seed: int) -> UserTable:
    """Users with past c, c+1, …, c+L-1 and future {c+L} (categories 1..C, cyclic)."""
    config = SyntheticConfig(num_users=users, num_categories=C, num_items=C, max_past=K,
                             items_per_interaction=1, feature_cardinalities=(2,),
                             cold_every=0, seed=seed)
    return UserTable(generate(config, CategoryRun()).examples, C, K, PROFILE_DIM)


def tiny(name: str):
    """A tiny seeded model of each baseline (the seed fixes its initial weights)."""
    torch.manual_seed(0)
    if name == "SASRec":
        return SASRec(C, K, SASRecConfig(d_model=32, n_layers=1, dropout=0.1))
    if name == "FMLPRec":
        return FMLPRec(C, K, FMLPRecConfig(d_model=32, n_layers=1, dropout=0.1))
    if name == "Mamba4Rec":
        return Mamba4Rec(C, K, Mamba4RecConfig(d_model=32, d_state=8, dropout=0.1))
    return CLRec(C, K, CLRecConfig(d_model=32, n_layers=1, dropout=0.1, queue_size=128))


NAMES = ["SASRec", "FMLPRec", "Mamba4Rec", "CLRec"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is fastest."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tables() -> dict[str, UserTable]:
    return {"train": pattern_table(384, seed=1), "test": pattern_table(256, seed=2)}


@pytest.fixture(scope="module")
def fitted(tables):
    models = {}
    for name in NAMES:
        model = Trainable(tiny(name), TRAIN)
        model.fit(tables["train"])
        models[name] = model
    return models


def test_registry_names_and_factories():
    assert {"SASRec", "FMLPRec", "Mamba4Rec", "CLRec"} <= set(PAPER_BASELINES)
    spec = DataSpec(num_categories=C, max_past=K, profile_dim=PROFILE_DIM)
    for name in NAMES:
        model = PAPER_BASELINES[name](spec, TRAIN)
        assert isinstance(model, CategoryRecommender)
        assert model.name == name


@pytest.mark.parametrize("name", NAMES)
def test_beats_random_ranking(name, fitted, tables):
    model, test = fitted[name], tables["test"]
    scores = model.score(test.batch(np.arange(len(test))))
    ranked = scores.argsort(-1, descending=True)[:, :5].numpy()
    metrics = ranking_metrics(ranked, test.future)
    # random: HR@1 = 1/12 ≈ 0.08, HR@3 = 0.25
    assert metrics["HR@1"] > 0.5, metrics
    assert metrics["HR@3"] > 0.75, metrics


@pytest.mark.parametrize("name", NAMES)
def test_scores_shape_and_padding_never_ranked(name, fitted, tables):
    test = tables["test"]
    batch = test.batch(np.arange(16))
    batch.past_categories[0] = 0  # a user without past still gets finite scores
    scores = fitted[name].score(batch)
    assert scores.shape == (16, C + 1)
    assert torch.isfinite(scores[:, 1:]).all()
    assert (scores[:, 0] < scores[:, 1:].min(1).values).all()
    assert (scores.argsort(-1, descending=True)[:, :C] != 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_scores(name, tables):
    short = TrainConfig(epochs=2, batch_size=32, progress=False, seed=3)
    scores = []
    for _ in range(2):
        model = Trainable(tiny(name), short)
        model.fit(pattern_table(128, seed=1))
        scores.append(model.score(tables["test"].batch(np.arange(64))))
    assert torch.equal(scores[0], scores[1])


@pytest.mark.parametrize("name", ["SASRec", "Mamba4Rec", "CLRec"])
def test_causal_encoders_do_not_look_ahead(name):
    model = tiny(name).eval()
    past = torch.tensor([[1, 2, 3, 4, 5, 0, 0, 0]])
    changed = past.clone()
    changed[0, 3:5] = torch.tensor([9, 10])
    with torch.no_grad():
        a, b = model.encode(past), model.encode(changed)
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6)
    assert not torch.allclose(a[:, 3], b[:, 3])


@pytest.mark.parametrize("name", ["SASRec", "FMLPRec"])
def test_sampled_bce_loss_trains_a_step(name, tables):
    torch.manual_seed(0)
    cls, cfg = (SASRec, SASRecConfig) if name == "SASRec" else (FMLPRec, FMLPRecConfig)
    model = cls(C, K, cfg(d_model=16, n_layers=1, loss="bce", num_negatives=3))
    batch = tables["train"].batch(np.arange(32))
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.item_embedding.weight.grad.abs().sum() > 0


def test_right_align():
    past = torch.tensor([[1, 2, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0], [4, 5, 6, 7]])
    expected = torch.tensor([[0, 0, 1, 2], [0, 0, 0, 3], [0, 0, 0, 0], [4, 5, 6, 7]])
    assert torch.equal(right_align(past), expected)
