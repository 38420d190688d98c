"""The trial summary of ``ccrec tune``: per-trial rows, the best trial, its bundle (no Ray run)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tune.driver import TrialRecord, best_bundle, best_params, summarise_trials


def _history(values: list[float]) -> pd.DataFrame:
    """M2 epochs 0, 1, … as Tune reports them (training_iteration counts from 1)."""
    return pd.DataFrame({"training_iteration": range(1, len(values) + 1),
                         "epoch": range(len(values)), "valid_HR@1": values})


RECORDS = [
    TrialRecord("a", {"candidates_size": 3, "precision_lambda": 0.5}, _history([0.2, 0.4, 0.3])),
    TrialRecord("b", {"candidates_size": 5, "precision_lambda": 1.5}, _history([0.1])),
    TrialRecord("c", {"candidates_size": np.int64(10), "precision_lambda": np.float64(0.25)},
                _history([0.3, 0.5, 0.45])),
]


def test_one_row_per_trial_best_epoch_first():
    trials = summarise_trials(RECORDS, "HR@1", max_epochs=3)
    assert trials["trial_id"].tolist() == ["c", "a", "b"]
    assert trials["HR@1"].tolist() == [0.5, 0.4, 0.1]
    assert trials["best_epoch"].tolist() == [1, 1, 0]
    assert trials["epochs_run"].tolist() == [3, 3, 1]
    assert trials["stopped_early"].tolist() == [False, False, True]  # ASHA stopped b
    assert trials["param_candidates_size"].tolist() == [10, 3, 5]


def test_ties_keep_the_first_reported_trial():
    tied = [TrialRecord("x", {}, _history([0.3])), TrialRecord("y", {}, _history([0.3]))]
    assert summarise_trials(tied, "HR@1", max_epochs=1)["trial_id"].tolist() == ["x", "y"]


def test_best_params_are_plain_values_with_the_fixed_ones():
    params = best_params(summarise_trials(RECORDS, "HR@1", max_epochs=3), {"layers": 2})
    assert params == {"layers": 2, "candidates_size": 10, "precision_lambda": 0.25}
    assert type(params["candidates_size"]) is int and type(params["precision_lambda"]) is float


def test_no_reporting_trial_is_an_error():
    with pytest.raises(ValueError, match="no trial reported"):
        summarise_trials([], "HR@1", max_epochs=3)


def test_the_best_trials_latest_bundle_is_copied(tmp_path):
    for version in ("20260101-000000", "20260102-000000"):
        bundle = tmp_path / "bundles" / "c" / version
        bundle.mkdir(parents=True)
        (bundle / "manifest.json").write_text(version)
    (tmp_path / "best-bundle" / "stale").mkdir(parents=True)  # an earlier search's copy
    copied = best_bundle(tmp_path, "c", tmp_path / "data", None, None)  # type: ignore[arg-type]
    assert copied == tmp_path / "best-bundle" / "20260102-000000"
    assert (copied / "manifest.json").read_text() == "20260102-000000"
    assert [p.name for p in (tmp_path / "best-bundle").iterdir()] == ["20260102-000000"]


def test_the_default_objective_is_the_tasks_hr1_plus_precision3():
    from tune.space import OBJECTIVES

    assert OBJECTIVES[0] == "HR@1+Precision@3"
    history = pd.DataFrame({"training_iteration": [1, 2], "epoch": [0, 1],
                            "valid_HR@1": [0.5, 0.4], "valid_Precision@3": [0.2, 0.4],
                            "valid_HR@1+Precision@3": [0.7, 0.8]})
    trials = summarise_trials([TrialRecord("a", {}, history)], OBJECTIVES[0], max_epochs=2)
    # epoch 1 wins on HR@1 + Precision@3 although epoch 0 has the higher HR@1
    assert trials.loc[0, "HR@1+Precision@3"] == 0.8 and trials.loc[0, "best_epoch"] == 1
