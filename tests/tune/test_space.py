"""The search space maps onto the cascade configuration (no Ray needed)."""

from __future__ import annotations

import pytest

from ccrec.models.cascade import CascadeConfig
from tune.space import apply_params, search_space, split_space


def test_every_hyperparameter_reaches_the_config():
    params = {"candidates_size": 7, "width": 32, "layers": 3, "heads": 4, "dropout": 0.2,
              "lr": 0.005, "batch_size": 64, "latent_dim": 32, "precision_lambda": 0.5}
    assert set(params) == set(search_space())
    c = apply_params(CascadeConfig(), params)
    assert c.candidates.size == 7 and c.sampler.d_model == c.scorer.d_model == 32
    assert (c.sampler.n_layers, c.sampler.n_heads, c.encoder.latent_dim) == (3, 4, 32)
    assert c.sampler.dropout == c.encoder.dropout == c.scorer.dropout == 0.2
    assert c.train_sampler.lr == c.train_encoder.lr == c.train_scorer.lr == 0.005
    assert c.train_scorer.batch_size == 64 and c.scorer.precision_lambda == 0.5
    assert c.train_scorer.monitor == "HR@1"  # untouched settings stay


def test_fixed_keys_leave_the_space_and_unknown_ones_fail():
    assert "layers" not in split_space({"layers": 2})
    with pytest.raises(ValueError, match="unknown"):
        split_space({"depth": 2})
    with pytest.raises(ValueError, match="unknown"):
        apply_params(CascadeConfig(), {"depth": 2})
