"""The paper's baselines in the evaluation harness (`ccrec evaluate --models`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import pytest
from paper_baseline_data import one_torch_thread  # noqa: F401 (autouse fixture)

from ccrec.baselines.paper import PAPER_BASELINES
from ccrec.cli import _evaluation_rows
from ccrec.config import load
from ccrec.data.prepared import load_prepared
from ccrec.data.synthetic import write_synthetic
from ccrec.evaluate import ROWS, run_evaluation
from ccrec.models.cascade import CascadeConfig

DEBUG = Path(__file__).parents[2] / "ccrec" / "configs" / "debug.yaml"


def test_models_option_rows():
    assert _evaluation_rows("default") == (ROWS, ())
    assert _evaluation_rows("all") == (ROWS, tuple(PAPER_BASELINES))
    assert _evaluation_rows("CCRec, SASRec") == (("CCRec",), ("SASRec",))
    with pytest.raises(click.BadParameter):
        _evaluation_rows("CCRec,NoSuchModel")


def test_harness_trains_and_times_paper_baselines(tmp_path):
    prepared = load_prepared(write_synthetic(tmp_path / "synthetic"))
    config = load(CascadeConfig, DEBUG)
    out = tmp_path / "out"
    summary = run_evaluation(prepared, config, out_dir=out, sensitivity_sizes=(),
                             rows=("Popularity", "CCRec"), baselines=("SASRec",))
    for group in ("warm", "cold"):
        assert list(summary["report"][group]) == ["Popularity", "CCRec", "SASRec"]
    written = json.loads((out / "summary.json").read_text())
    timings = written["timings"]
    # trained rows record their training time (the cascade's: all three stages);
    # counting rows have none; every row is timed at inference
    assert timings["CCRec"]["train_seconds"] == written["cascade_seconds"]["total"]
    assert math.isfinite(timings["SASRec"]["train_seconds"])
    assert math.isnan(timings["Popularity"]["train_seconds"])
    assert all(math.isfinite(t["inference_ms_per_point"]) for t in timings.values())
    # the debug config's 3 epochs with patience 3: no early stop
    assert written["fits"]["SASRec"]["epochs"] == config.train_sampler.epochs == 3
    assert "SASRec" in json.loads((out / "results.json").read_text())["warm"]


def test_baselines_alone_skip_the_cascade_on_the_same_splits(tmp_path):
    prepared = load_prepared(write_synthetic(tmp_path / "synthetic"))
    config = load(CascadeConfig, DEBUG)
    alone = run_evaluation(prepared, config, out_dir=tmp_path / "alone",
                           sensitivity_sizes=(1, 3), bundle_root=tmp_path / "bundles",
                           rows=("Popularity",), baselines=("SASRec",))
    assert alone["cascade_seconds"] == {}  # no cascade row asked for: none trained
    assert not (tmp_path / "bundles").exists()
    assert list(alone["report"]["warm"]) == ["Popularity", "SASRec"]
    with_cascade = run_evaluation(prepared, config, out_dir=tmp_path / "both",
                                  sensitivity_sizes=(), rows=("Popularity", "CCRec"),
                                  baselines=("SASRec",))
    for group in ("warm", "cold"):  # same splits, same seed: the same numbers
        assert alone["report"][group]["SASRec"] == with_cascade["report"][group]["SASRec"]
