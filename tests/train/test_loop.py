"""The one training loop: early stopping, resuming from a checkpoint, throughput."""

from __future__ import annotations

import math

import pytest
import torch

from ccrec.data.synthetic import SyntheticConfig, generate
from ccrec.data.tables import UserTable, make_loader
from ccrec.models.base import TrainConfig
from ccrec.models.sampler import MLESampler, SamplerConfig
from ccrec.train.checkpoint import resume, save_checkpoint
from ccrec.train.loop import EarlyStopping, FitResult, fit, loss_validation, make_optimizer


def test_loss_stops_after_patience_epochs_without_improving_by_min_delta():
    rule = EarlyStopping(monitor="loss", min_delta=0.1, patience=2)
    kept = [rule.update(epoch, value) for epoch, value in enumerate([1.0, 0.95, 0.8, 0.85])]
    # 0.95 is not 0.1 below 1.0; 0.8 is; 0.85 is worse
    assert kept == [True, False, True, False]
    assert (rule.best_epoch, rule.best_value, rule.bad_epochs) == (2, 0.8, 1)
    assert not rule.stop
    assert rule.update(4, 0.71) is False  # 0.09 better: less than min_delta
    assert rule.stop


def test_other_metrics_are_maximised():
    rule = EarlyStopping(monitor="HR@1", min_delta=0.0, patience=1)
    assert [rule.update(e, v) for e, v in enumerate([0.2, 0.3, 0.3])] == [True, True, False]
    assert (rule.best_epoch, rule.best_value, rule.stop) == (1, 0.3, True)


def test_without_validation_every_epoch_is_kept():
    rule = EarlyStopping(patience=1)
    assert [rule.update(e, None) for e in range(3)] == [True, True, True]
    assert rule.best_epoch == 2 and math.isnan(rule.best_value) and not rule.stop


def test_fit_result_throughput_from_history():
    result = FitResult([{"train_examples": 100, "train_seconds": 2.0},
                        {"train_examples": 50, "train_seconds": 1.0}], 1, 0.5, 4.0)
    assert result.examples_per_s == 50.0
    assert result.epoch_seconds == 1.5
    assert result.summary() == {"best_epoch": 1, "best_value": 0.5, "epochs": 2,
                                "examples_per_s": 50.0}


@pytest.fixture(scope="module")
def users() -> UserTable:
    data = generate(SyntheticConfig(num_users=96, cold_every=0))
    return UserTable(data.examples, 6, 5, 8)


def _sampler() -> MLESampler:
    torch.manual_seed(0)
    return MLESampler(6, 5, SamplerConfig(d_model=16, n_heads=2, n_layers=1, ff_dim=32,
                                          hidden=32, dropout=0.2))


CONFIG = TrainConfig(epochs=4, batch_size=16, lr=1e-2, patience=10, progress=False, seed=7)


def test_a_killed_fit_resumes_from_its_checkpoint_as_if_never_stopped(users, tmp_path):
    unbroken = _sampler()
    whole = fit(unbroken, make_loader(users, 16, shuffle=True), CONFIG,
                validate=loss_validation(users))

    class Killed(Exception):
        pass

    first = _sampler()
    optimizer = make_optimizer(first, CONFIG)

    def checkpoint_then_die(state):
        save_checkpoint(tmp_path, first, optimizer, state)
        if state.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        fit(first, make_loader(users, 16, shuffle=True), CONFIG,
            validate=loss_validation(users), optimizer=optimizer, on_epoch=checkpoint_then_die)

    second = _sampler()
    optimizer = make_optimizer(second, CONFIG)
    state = resume(tmp_path, second, optimizer)
    resumed = fit(second, make_loader(users, 16, shuffle=True), CONFIG,
                  validate=loss_validation(users), optimizer=optimizer, state=state)

    assert [h["start_epoch"] for h in resumed.history] == [0, 0, 2, 2]
    assert [h["valid_loss"] for h in resumed.history] == [h["valid_loss"] for h in whole.history]
    assert resumed.best_epoch == whole.best_epoch
    for name, weight in unbroken.state_dict().items():
        assert torch.equal(weight, second.state_dict()[name]), name


def test_validate_initial_keeps_the_untrained_weights_when_no_epoch_beats_them(users):
    model = _sampler()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    values = iter([0.5, 0.4, 0.3, 0.45, 0.2])  # before training, then epochs 0..3

    def validate(_model):
        return {"HR@1": next(values)}

    config = TrainConfig(epochs=4, batch_size=16, lr=1e-2, patience=10, progress=False,
                         monitor="HR@1", validate_initial=True)
    result = fit(model, make_loader(users, 16, shuffle=True), config, validate=validate)
    assert (result.best_epoch, result.best_value) == (-1, 0.5)
    assert len(result.history) == 4  # the initial check is no training epoch
    for name, weight in model.state_dict().items():
        assert torch.equal(weight, initial[name]), name
    # without it, the best epoch's weights stay: epoch 2, HR@1 0.45
    values = iter([0.4, 0.3, 0.45, 0.2])
    result = fit(_sampler(), make_loader(users, 16, shuffle=True),
                 TrainConfig(**{**config.__dict__, "validate_initial": False}), validate=validate)
    assert (result.best_epoch, result.best_value) == (2, 0.45)
