"""``ccrec tune`` machinery: a 4-trial ASHA search over the cascade on a tiny data set.

M1 and the VAE are held fixed (``fixed``), so the stage cache trains them once
and the four trials differ in |r_t| and the precision-loss weight of M2.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ccrec.models.base import TrainConfig
from ccrec.models.cascade import CandidateConfig, CascadeConfig
from ccrec.models.encoder import EncoderConfig
from ccrec.models.sampler import SamplerConfig
from ccrec.models.scorer import ScorerConfig

pytestmark = pytest.mark.slow

FIXED = {"width": 16, "layers": 1, "heads": 2, "dropout": 0.0, "lr": 0.01, "batch_size": 32,
         "latent_dim": 8}


def _base() -> CascadeConfig:
    return CascadeConfig(
        max_past=5,
        sampler=SamplerConfig(d_model=16, n_heads=2, n_layers=1, ff_dim=32, hidden=32),
        encoder=EncoderConfig(item_profile_dim=32, hidden=32, latent_dim=8),
        scorer=ScorerConfig(d_model=16, hidden=32),
        candidates=CandidateConfig(size=3),
        train_sampler=TrainConfig(epochs=1, batch_size=32, lr=0.01),
        train_encoder=TrainConfig(epochs=1, batch_size=32, lr=0.01),
        train_scorer=TrainConfig(epochs=2, batch_size=32, lr=0.01, monitor="HR@1"),
    )


@pytest.mark.timeout(1500)  # ~8 min on the shared 2-core machine under load
def test_four_trial_search_picks_the_best_trial(ray_cluster, tmp_path):
    from ccrec.bundle import Bundle
    from ccrec.data.synthetic import Favourites, write_synthetic
    from ccrec.train.stage_runner import RayConfig
    from tune.driver import run_tuning

    data = write_synthetic(tmp_path / "tiny", pattern=Favourites(), num_users=240,
                           feature_cardinalities=(7, 4), cold_every=0)
    summary = run_tuning(data, _base(), RayConfig(num_workers=1, cpus_per_worker=0.5),
                         tmp_path / "out",
                         num_samples=4, objective="HR@1", fixed=FIXED, seed=0,
                         max_concurrent=2)  # half a CPU each: room beside other Ray users

    trials = pd.read_csv(summary.table)
    assert len(trials) == 4
    assert summary.best_value == pytest.approx(trials["HR@1"].max())
    assert summary.best_trial == trials.loc[trials["HR@1"].idxmax(), "trial_id"]
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best["trial_id"] == summary.best_trial and best["params"]["width"] == 16
    assert set(best["params"]) >= {"candidates_size", "precision_lambda"}
    assert summary.plot.exists() and summary.plot.stat().st_size > 0
    Bundle.load(summary.bundle)  # the recorded bundle is complete and loads
