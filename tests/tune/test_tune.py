"""``ccrec tune`` end to end on Ray: a 2-trial ASHA search over M2 on a tiny data set.

M1 and the VAE are held fixed and the trials run one after the other, so the
first trial trains them and the second reuses them from the stage cache; the
trials differ in |r_t| and the precision-loss weight of M2. Workers take half
a CPU each, leaving room for the other Ray users of the test session.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ccrec.data.synthetic import Favourites, write_synthetic
from ccrec.models.base import TrainConfig
from ccrec.models.cascade import CandidateConfig, CascadeConfig
from ccrec.models.encoder import EncoderConfig
from ccrec.models.sampler import SamplerConfig
from ccrec.models.scorer import ScorerConfig

pytestmark = pytest.mark.slow

FIXED = {"width": 16, "layers": 1, "heads": 2, "dropout": 0.0, "lr": 0.01, "batch_size": 32,
         "latent_dim": 8}
#: M2 epochs per trial.
EPOCHS = 2


def _base() -> CascadeConfig:
    return CascadeConfig(
        max_past=5,
        sampler=SamplerConfig(d_model=16, n_heads=2, n_layers=1, ff_dim=32, hidden=32),
        encoder=EncoderConfig(item_profile_dim=32, hidden=32, latent_dim=8),
        scorer=ScorerConfig(d_model=16, hidden=32),
        candidates=CandidateConfig(size=3),
        train_sampler=TrainConfig(epochs=1, batch_size=32, lr=0.01),
        train_encoder=TrainConfig(epochs=1, batch_size=32, lr=0.01),
        train_scorer=TrainConfig(epochs=EPOCHS, batch_size=32, lr=0.01, monitor="HR@1"),
    )


@pytest.mark.timeout(900)
def test_two_trial_search_records_the_best_trial_and_its_bundle(ray_cluster, tmp_path):
    from ccrec.bundle import Bundle
    from ccrec.train.stage_runner import RayConfig
    from tune.driver import run_tuning

    data = write_synthetic(tmp_path / "tiny", pattern=Favourites(), num_users=120,
                           feature_cardinalities=(7, 4), cold_every=0)
    out = tmp_path / "out"
    summary = run_tuning(data, _base(), RayConfig(num_workers=1, cpus_per_worker=0.5), out,
                         num_samples=2, objective="HR@1", fixed=FIXED, seed=0,
                         max_concurrent=1)

    trials = pd.read_csv(summary.table)
    assert len(trials) == 2 and set(trials["epochs_run"]) <= {1, EPOCHS}
    assert summary.best_value == pytest.approx(trials["HR@1"].max())
    assert summary.best_trial == trials.loc[trials["HR@1"].idxmax(), "trial_id"]
    best = json.loads((out / "best.json").read_text())
    assert best["trial_id"] == summary.best_trial and best["value"] == summary.best_value
    assert best["params"] == {**FIXED, "candidates_size": best["config"]["candidates"]["size"],
                              "precision_lambda": best["config"]["scorer"]["precision_lambda"]}
    # M1 and the VAE trained once: one cache entry (weights + record) each
    assert sorted(p.name.split("-")[0] for p in (out / "stage-cache").iterdir()) == [
        "m1", "m1", "vae", "vae"]
    # the recorded bundle loads and is the best trial's: the cascade's HR@1 on the
    # validation users is the best M2 epoch's (its top category is M2's top candidate)
    bundle = Bundle.load(summary.bundle)
    assert bundle.metrics["valid"]["HR@1"] == pytest.approx(summary.best_value)
