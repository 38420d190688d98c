"""The stage table (seeds, models, tables) and the stage cache."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from ccrec.data.tables import UserTable
from ccrec.models.base import TrainConfig
from ccrec.models.cascade import CascadeConfig
from ccrec.models.sampler import SamplerConfig
from ccrec.models.scorer import ScorerConfig
from ccrec.train.loop import FitResult
from ccrec.train.stages import StageSpec

CONFIG = CascadeConfig(seed=5, train_sampler=TrainConfig(seed=10),
                       train_encoder=TrainConfig(seed=20),
                       train_scorer=TrainConfig(seed=30, monitor="HR@1"))


def _spec(stage: str, config: CascadeConfig = CONFIG) -> StageSpec:
    return StageSpec(stage, 6, (3, 4), config, embedding_dim=config.encoder.latent_dim)


def test_stage_seeds_come_from_one_table():
    # train seed = the stage's own + the cascade's + the stage offset (0, 1, 2)
    assert [_spec(s).train.seed for s in ("m1", "vae", "m2")] == [15, 26, 37]
    assert [_spec(s).seed for s in ("m1", "vae", "m2")] == [5, 6, 7]
    assert _spec("m2").train.monitor == "HR@1"  # the rest of the stage's settings stay


def test_build_initialises_each_stage_from_its_seed():
    first, again = _spec("m1").build(), _spec("m1").build()
    for name, weight in first.state_dict().items():
        assert torch.equal(weight, again.state_dict()[name])
    other = _spec("m1", replace(CONFIG, seed=6)).build()
    assert not torch.equal(first.embedding.weight, other.embedding.weight)


def test_unknown_stage_and_m2_without_candidates_fail():
    with pytest.raises(ValueError, match="stage must be one of"):
        _spec("m3")
    with pytest.raises(ValueError, match="candidates"):
        _spec("m2").table(None)  # type: ignore[arg-type]


def test_stage_cache_keys_and_round_trip(tmp_path):
    from ccrec.train.stage_cache import StageCache
    from ccrec.train.stage_runner import StageResult

    key = StageCache.key(tmp_path, "m1", CONFIG)
    assert key == StageCache.key(tmp_path, "m1", CONFIG)
    # M2's settings do not touch M1's entry; M1's own settings and the seed do
    assert key == StageCache.key(tmp_path, "m1", replace(CONFIG, scorer=ScorerConfig(d_model=8)))
    assert key != StageCache.key(tmp_path, "m1", replace(CONFIG, sampler=SamplerConfig(d_model=8)))
    assert key != StageCache.key(tmp_path, "m1", replace(CONFIG, seed=6))
    assert key != StageCache.key(tmp_path, "vae", CONFIG)

    cache = StageCache(tmp_path / "cache")
    assert cache.load(key, "m1") is None
    weights = {"w": torch.arange(3.0)}
    fit = FitResult([{"epoch": 0, "train_examples": 4, "train_seconds": 2.0}], 0, math.nan, 3.0)
    cache.store(key, StageResult("m1", fit, weights, "/ckpt"))
    loaded = cache.load(key, "m1")
    assert loaded is not None and loaded.checkpoint_path == "/ckpt"
    assert torch.equal(loaded.state_dict["w"], weights["w"])
    assert loaded.fit.history == fit.history and loaded.fit.examples_per_s == 2.0
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f"m1-{key}.json",
                                                                      f"m1-{key}.pt"]


def test_a_new_rule_for_a_stage_rows_gets_new_cache_keys(tmp_path, monkeypatch):
    from ccrec.train import stage_cache
    from ccrec.train.stage_cache import StageCache

    before = {s: StageCache.key(tmp_path, s, CONFIG) for s in ("m1", "vae")}
    monkeypatch.setitem(stage_cache.STAGE_ROWS, "vae", stage_cache.STAGE_ROWS["vae"] + 1)
    assert StageCache.key(tmp_path, "vae", CONFIG) != before["vae"]
    assert StageCache.key(tmp_path, "m1", CONFIG) == before["m1"]


def test_vae_trains_on_each_distinct_category_interaction_once():
    # user 7 at three rolling origins, user 8 at one. The CI (category 2, start 200)
    # was still open at the first origin (item 21 only) and holds 21, 22 later; the
    # CI (category 1, start 400) repeats the items of (1, 100) but is another CI.
    past = [  # (category, start, items) per past CI, oldest first
        [(1, 100, [11, 12]), (2, 200, [21])],
        [(1, 100, [11, 12]), (2, 200, [21, 22]), (3, 300, [31])],
        [(1, 100, [11, 12]), (2, 200, [21, 22]), (3, 300, [31]), (1, 400, [11, 12])],
        [(1, 100, [11, 12])],
    ]
    frame = pd.DataFrame({
        "user": [7, 7, 7, 8],
        "past_categories": [np.array([c for c, _, _ in p]) for p in past],
        "past_starts": [np.array([s for _, s, _ in p]) for p in past],
        "past_items": [[np.array(i) for _, _, i in p] for p in past],
        "user_features": [np.array([1, 2])] * 4,
        "future_categories": [np.array([4])] * 4,
    })
    vae = _spec("vae", replace(CONFIG, max_past=4))
    users = UserTable(frame, 6, 4, CONFIG.encoder.item_profile_dim)
    table = vae.table(users)
    # 10 past CIs in the 4 examples; distinct: user 7's (1,100), (2,200) with 1 item,
    # (2,200) with 2 items, (3,300), (1,400), and user 8's (1,100)
    assert len(table) == 6
    assert table.user_row.tolist() == [0, 0, 1, 1, 2, 3]
    assert table.slot.tolist() == [0, 1, 1, 2, 3, 0]
    batch = table.batch(np.arange(6))
    assert batch.categories.tolist() == [1, 2, 2, 3, 1, 1]
    # the open version weighs its one item 1.0, the later one its two items 0.5 each
    assert sorted(batch.profiles[1][batch.profiles[1] > 0].tolist()) == [1.0]
    assert sorted(batch.profiles[2][batch.profiles[2] > 0].tolist()) == [0.5, 0.5]
    assert len(_spec("m1", replace(CONFIG, max_past=4)).table(users)) == 4  # M1: every example
