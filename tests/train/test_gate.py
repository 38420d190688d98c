"""The publication gate refuses a model trained on shuffled labels, publishes a better one,
and a warm start begins from the served bundle's weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ccrec.bundle import Bundle, save_bundle
from ccrec.config import load
from ccrec.data.prepared import load_prepared
from ccrec.data.synthetic import write_synthetic
from ccrec.models.cascade import CascadeConfig
from ccrec.train.cascade import build_tables, train_cascade
from ccrec.train.gate import gate
from ccrec.train.stages import StageSpec

DEBUG = Path(__file__).parents[2] / "ccrec" / "configs" / "debug.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One cascade on the real labels, one on training labels shuffled across users."""
    torch.set_num_threads(1)
    prepared = load_prepared(write_synthetic(tmp_path_factory.mktemp("gate"), num_users=160))
    config = load(CascadeConfig, DEBUG, ["train_sampler.epochs=8", "train_scorer.epochs=8"])
    real = train_cascade(prepared, config)
    shuffled = dataclasses.replace(prepared, examples=prepared.examples.copy())
    train = np.flatnonzero(shuffled.examples["split"].to_numpy() == "train")
    futures = shuffled.examples["future_categories"].to_numpy().copy()
    futures[train] = futures[np.random.default_rng(0).permutation(train)]
    shuffled.examples["future_categories"] = futures
    noise = train_cascade(shuffled, config)
    valid = build_tables(prepared, config)["valid"]
    return prepared, config, real.model, noise.model, valid


def test_the_gate_refuses_a_model_trained_on_shuffled_labels(trained):
    _, _, real, noise, valid = trained
    refused = gate(current=real, candidate=noise, held_out=valid, margin=0.02)
    assert not refused.publish
    assert refused.n == len(valid) == 20
    assert refused.candidate < refused.current - 0.02
    assert refused.diff == pytest.approx(refused.candidate - refused.current)
    assert refused.diff_ci[1] < 0  # clearly worse: the whole interval is below 0
    published = gate(current=noise, candidate=real, held_out=valid)
    assert published.publish and published.diff > 0
    # the same model passes against itself (diff 0 ≥ −margin)
    same = gate(current=real, candidate=real, held_out=valid)
    assert same.publish and same.diff == 0.0


def test_the_gate_margin_is_at_least_0(trained):
    _, _, real, noise, valid = trained
    with pytest.raises(ValueError, match="margin"):
        gate(real, noise, valid, margin=-0.1)


def test_a_warm_start_builds_every_stage_with_the_bundle_weights(trained, tmp_path):
    prepared, config, real, _, _ = trained
    bundle = Bundle.load(save_bundle(real, config, prepared.vocab, tmp_path))
    warm = dataclasses.replace(config, warm_start=str(bundle.path))
    cards = tuple(prepared.feature_cardinalities)
    built = {stage: StageSpec(stage, prepared.num_categories, cards, warm,
                              embedding_dim=config.encoder.latent_dim).build()
             for stage in ("m1", "vae", "m2")}
    for stage, module in (("m1", bundle.model.sampler), ("vae", bundle.model.encoder),
                          ("m2", bundle.model.scorer)):
        for key, value in module.state_dict().items():
            assert torch.equal(built[stage].state_dict()[key], value), (stage, key)
    fresh = StageSpec("m1", prepared.num_categories, cards, config).build()
    assert not torch.equal(fresh.state_dict()["embedding.weight"],
                           bundle.model.sampler.state_dict()["embedding.weight"])
