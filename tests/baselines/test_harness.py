"""The paper's baselines in the evaluation harness (`ccrec evaluate --models`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import pytest

from ccrec.baselines.paper import PAPER_BASELINES
from ccrec.cli import _evaluation_rows
from ccrec.config import load
from ccrec.data.prepared import load_prepared
from ccrec.data.synthetic import write_synthetic
from ccrec.evaluate import ROWS, run_evaluation
from ccrec.train.cascade import CascadeConfig

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
        assert list(summary["results"][group]) == ["Popularity", "CCRec", "SASRec"]
    written = json.loads((out / "summary.json").read_text())
    timing = written["timings"]["SASRec"]
    assert timing["train_seconds"] > 0 and timing["inference_ms_per_user"] > 0
    assert math.isnan(written["timings"]["Popularity"]["train_seconds"])
    assert "SASRec" in json.loads((out / "results.json").read_text())["warm"]
