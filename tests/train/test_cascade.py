"""The cascade on a tiny synthetic data set: trains, overfits, round-trips a bundle."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ccrec.bundle import Bundle, BundleError, save_bundle
from ccrec.config import load
from ccrec.data.prepared import load_prepared
from ccrec.data.synthetic import write_synthetic
from ccrec.data.tables import make_loader
from ccrec.metrics import evaluate_recommender
from ccrec.models.base import TrainConfig
from ccrec.models.cascade import CascadeConfig
from ccrec.train.cascade import build_tables, train_cascade
from ccrec.train.loop import TrainStep, evaluate_epoch, train_epoch

DEBUG = Path(__file__).parents[2] / "ccrec" / "configs" / "debug.yaml"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return load_prepared(write_synthetic(tmp_path_factory.mktemp("synthetic")))


@pytest.fixture(scope="module")
def overfit(prepared):
    """The debug config, trained long enough to memorise the training users."""
    config = load(CascadeConfig, DEBUG, [
        "train_sampler.epochs=60", "train_sampler.patience=100",
        "train_encoder.epochs=3", "train_scorer.epochs=60", "train_scorer.patience=100",
        "train_scorer.monitor=loss",
    ])
    torch.set_num_threads(1)
    return config, train_cascade(prepared, config)


def test_tables_and_loader_batches(prepared):
    config = load(CascadeConfig, DEBUG)
    tables = build_tables(prepared, config)
    train = tables["train"]
    batch = next(iter(make_loader(train, 8, shuffle=True, seed=1)))
    assert batch.past_categories.shape == (8, 5)
    assert batch.past_profiles.shape == (8, 5, 32)
    present = batch.past_categories != 0
    sums = batch.past_profiles.sum(-1)
    assert torch.allclose(sums[present], torch.ones(int(present.sum())))
    assert (sums[~present] == 0).all()
    again = next(iter(make_loader(train, 8, shuffle=True, seed=1)))
    assert torch.equal(batch.rows, again.rows)  # seeded shuffling


def test_train_epoch_reports_the_example_weighted_mean_loss(prepared):
    config = load(CascadeConfig, DEBUG)
    tables = build_tables(prepared, config)
    from ccrec.models.sampler import MLESampler

    model = MLESampler(prepared.num_categories, 5, config.sampler)  # no dropout
    step = TrainStep(model)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # steps that change nothing
    loader = make_loader(tables["train"], 16, shuffle=True)  # the last batch is smaller
    out = train_epoch(step, loader, frozen, TrainConfig(progress=False))
    whole = evaluate_epoch(step, make_loader(tables["train"], len(tables["train"]),
                                              shuffle=False))
    assert out["examples"] == whole["examples"] == len(tables["train"])
    assert out["loss"] == pytest.approx(whole["loss"], rel=1e-5)


def test_cascade_overfits_tiny_fixture_to_hr1_of_1(overfit):
    _, result = overfit
    train = result.tables["train"]
    assert evaluate_recommender(result.model.sampler, train)["HR@1"] == 1.0
    assert evaluate_recommender(result.model, train)["HR@1"] == 1.0


def test_bundle_round_trip_identical_scores(overfit, prepared, tmp_path):
    config, result = overfit
    path = save_bundle(result.model, config, prepared.vocab, tmp_path, dataset="synthetic",
                       metrics={"x": 1.0})
    bundle = Bundle.load(path)
    assert bundle.version == path.name and bundle.metrics == {"x": 1.0}
    batch = result.tables["warm_test"].batch(np.arange(len(result.tables["warm_test"])))
    with torch.no_grad():
        assert torch.equal(result.model.score(batch), bundle.model.score(batch))
    rec = bundle.recommender()
    row = prepared.split("warm_test").iloc[0]
    top = rec.recommend(list(row.past_categories), [list(i) for i in row.past_items],
                        list(row.user_features), k=3)
    with torch.no_grad():
        expected = result.model.score(result.tables["warm_test"].batch(np.array([0])))[0]
    expected[0] = -np.inf
    assert [c for c, _ in top] == expected.topk(3).indices.tolist()
    assert top[0][1] == pytest.approx(float(expected.max()))
    excluded = rec.recommend(list(row.past_categories), None, None, k=2, exclude=[top[0][0]])
    assert top[0][0] not in [c for c, _ in excluded]
    batched = rec.recommend_batch([*[rec_request(r) for _, r in
                                     prepared.split("warm_test").head(3).iterrows()]], k=3)
    assert [c for c, _ in batched[0]] == [c for c, _ in top]
    assert [s for _, s in batched[0]] == pytest.approx([s for _, s in top], abs=1e-5)


def rec_request(row):
    from ccrec.bundle import UserRequest

    return UserRequest(list(row.past_categories), [list(i) for i in row.past_items],
                       list(row.user_features))


def test_bad_bundles_fail_clearly(overfit, prepared, tmp_path):
    config, result = overfit
    path = save_bundle(result.model, config, prepared.vocab, tmp_path / "a")
    (path / "scorer.safetensors").unlink()
    with pytest.raises(BundleError, match="missing.*scorer.safetensors"):
        Bundle.load(path)
    with pytest.raises(BundleError, match="no such bundle"):
        Bundle.load(tmp_path / "nope")
    # a vocabulary that no longer matches the weights
    path = save_bundle(result.model, config, prepared.vocab, tmp_path / "b")
    vocab = json.loads((path / "vocab.json").read_text())
    vocab["categories"].append("new-category")
    (path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(BundleError, match="digest"):
        Bundle.load(path)
    with pytest.raises(BundleError, match="categories"):
        Bundle.load(path, verify=False)
    # weights of the wrong size
    path = save_bundle(result.model, config, prepared.vocab, tmp_path / "c")
    state = load_file(str(path / "scorer.safetensors"))
    state["e2.weight"] = torch.zeros(3, state["e2.weight"].shape[1])
    save_file(state, str(path / "scorer.safetensors"))
    with pytest.raises(BundleError, match="scorer.safetensors does not fit"):
        Bundle.load(path, verify=False)
    # a config key the code does not know
    path = save_bundle(result.model, config, prepared.vocab, tmp_path / "d")
    cfg = json.loads((path / "config.json").read_text())
    cfg["sampler"]["bogus"] = 1
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="bogus"):
        Bundle.load(path, verify=False)


def test_config_rejects_unknown_keys():
    from ccrec.config import ConfigError

    with pytest.raises(ConfigError):
        load(CascadeConfig, DEBUG, ["scorer.nope=1"])
    with pytest.raises(ConfigError):
        load(CascadeConfig, DEBUG, ["candidates.size=abc"])
    assert dataclasses.is_dataclass(load(CascadeConfig, DEBUG))
