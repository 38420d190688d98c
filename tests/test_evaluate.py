"""The results files of `ccrec evaluate`, in the paper's column order."""

from __future__ import annotations

import json

from ccrec.evaluate import ROWS, write_results
from ccrec.metrics import COLUMNS, ranking_metrics


def test_write_results_files_and_shape(tmp_path):
    metrics = ranking_metrics([[1, 2, 3, 4, 5]], [{2}])
    results = {"warm": {r: metrics for r in ROWS}, "cold": {r: metrics for r in ROWS}}
    sens = {"warm": {1: metrics, 3: metrics}, "cold": {1: metrics, 3: metrics}}
    write_results(results, tmp_path / "out", "synthetic", tmp_path / "x.json", sens)
    payload = json.loads((tmp_path / "x.json").read_text())
    assert set(payload) == {"warm", "cold"}
    assert list(payload["warm"]) == list(ROWS)
    assert list(payload["warm"]["CCRec"]) == list(COLUMNS)
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert header == "group,model," + ",".join(COLUMNS)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| model | HR@1 | HR@3 | HR@5 | Precision@3" in md
    for name in ("results.png", "sensitivity.png", "results.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_results_json_merges_rows_of_separate_runs(tmp_path):
    first = ranking_metrics([[1, 2, 3, 4, 5]], [{1}])
    second = ranking_metrics([[1, 2, 3, 4, 5]], [{5}])
    target = tmp_path / "results.json"
    write_results({"warm": {"CCRec": first, "Popularity": first}, "cold": {"CCRec": first}},
                  tmp_path / "a", "t", target)
    write_results({"warm": {"SASRec": second, "Popularity": second}, "cold": {"SASRec": second}},
                  tmp_path / "b", "t", target)
    payload = json.loads(target.read_text())
    assert list(payload["warm"]) == ["CCRec", "Popularity", "SASRec"]
    assert payload["warm"]["CCRec"]["HR@1"] == 1.0  # kept from the first run
    assert payload["warm"]["Popularity"]["HR@1"] == 0.0  # replaced by the second run
    assert list(payload["cold"]) == ["CCRec", "SASRec"]
