"""The evaluation harness and the report: files, shape, intervals, significance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ccrec.data.tables import UserTable
from ccrec.metrics import COLUMNS, MetricSums, evaluate_sums, rankings
from ccrec.report import build_report, load_rows, save_row, write_report


def hits(flags, users=None):
    """Top-1 list [1] for every point; a point hits when its truth is {1}."""
    truths = [{1} if f else {2} for f in flags]
    return MetricSums.from_rankings([[1, 2, 3, 4, 5]] * len(truths), truths,
                                    first_hit_rank=np.where(flags, 1, 2), units=users)


def test_report_json_has_the_results_shape_with_intervals(tmp_path):
    rows = {"warm": {"Popularity": hits([1, 0] * 20), "CCRec": hits([1] * 40)},
            "replay": {"Popularity": hits([0, 0, 1, 1], [5, 5, 6, 6]),
                       "CCRec": hits([1, 0, 1, 1], [5, 5, 6, 6])}}
    payload = write_report(rows, tmp_path / "out", "synthetic",
                           protocol={"future": "cis:3", "max_past": 10},
                           json_path=tmp_path / "x.json")
    assert json.loads((tmp_path / "x.json").read_text()) == payload
    assert payload["protocol"] == {"future": "cis:3", "max_past": 10}
    assert payload["n"] == {"warm": 40, "replay": 2} and payload["points"]["replay"] == 4
    warm = payload["warm"]
    assert list(warm) == ["Popularity", "CCRec"]
    assert warm["Popularity"]["HR@1"] == 0.5 and warm["CCRec"]["HR@1_ci"] == [1.0, 1.0]
    lo, hi = warm["Popularity"]["HR@1_ci"]
    assert 0.3 < lo < 0.5 < hi < 0.7  # 40 users, half hit: ±0.16 or so
    assert set(warm["CCRec"]) == {*COLUMNS, *(f"{m}_ci" for m in COLUMNS)}
    sig = payload["significance"]["warm"]
    assert sig["best_other"] == "Popularity" and sig["metric"] == "HR@1"
    assert sig["diff"] == 0.5 and sig["p"] < 0.01
    assert payload["best"]["warm"]["HR@1"] == {"row": "CCRec", "runner_up": "Popularity",
                                                "p": sig["p"], "significant": True}
    # two users only: not significant, so nothing is bold in the replay table
    assert not payload["best"]["replay"]["HR@1"]["significant"]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "## warm (n = 40 users)" in md and "## replay (n = 2 users, 4 points)" in md
    assert "| CCRec | **1.000 [1.000, 1.000]**" in md
    assert "**" not in md.split("## replay")[1].split("CCRec against")[0]
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert header.startswith("group,model,HR@1,HR@1_lo,HR@1_hi,HR@3")
    for name in ("results-warm.png", "results-replay.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_rows_of_separate_runs_add_up_and_must_share_users(tmp_path):
    save_row(tmp_path, "warm", "CCRec", hits([1, 1, 0]))
    save_row(tmp_path, "warm", "SASRec", hits([0, 1, 0]))
    save_row(tmp_path, "warm", "Popularity", hits([0, 0, 0]))
    save_row(tmp_path, "warm", "Popularity", hits([1, 0, 0]))  # a re-run replaces the row
    rows = load_rows(tmp_path, order=("Popularity", "CCRec"))
    assert list(rows["warm"]) == ["Popularity", "CCRec", "SASRec"]
    for group in ("replay", "cold"):
        save_row(tmp_path, group, "CCRec", hits([1, 1, 0]))
    assert list(load_rows(tmp_path)) == ["warm", "cold", "replay"]  # table order, not a-z
    assert build_report(rows)["warm"]["Popularity"]["HR@1"] == pytest.approx(1 / 3)
    save_row(tmp_path, "warm", "TIGER", hits([1, 1, 0], users=[0, 1, 7]))
    with pytest.raises(ValueError, match="'TIGER' was scored on other users"):
        build_report(load_rows(tmp_path))


class Fixed:
    """Scores from a fixed [C+1] vector."""

    name = "fixed"

    def __init__(self, scores):
        self.scores = torch.tensor(scores, dtype=torch.float)

    def score(self, batch):
        return self.scores.expand(len(batch), -1).clone()


def test_harness_ranks_every_category_and_clusters_by_user():
    frame = pd.DataFrame({
        "user": [3, 3, 9], "past_categories": [np.array([1]), np.array([1, 2]), np.array([4])],
        "past_starts": [np.array([10]), np.array([10, 20]), np.array([10])],
        "past_items": [[np.array([1])], [np.array([1]), np.array([2])], [np.array([4])]],
        "user_features": [np.zeros(1, np.int64)] * 3,
        "future_categories": [np.array([2]), np.array([4, 3]), np.array([1])]})
    table = UserTable(frame, 4, max_past=2, profile_dim=4)
    model = Fixed([9.0, 0.1, 0.4, 0.3, 0.2])  # ranks 2, 3, 4, 1 (padding never)
    top, first = rankings(model, table, kmax=3)
    assert top.tolist() == [[2, 3, 4]] * 3 and first.tolist() == [1, 2, 4]
    sums = evaluate_sums(model, table)
    assert sums.units.tolist() == [3, 9] and sums.points.tolist() == [2, 1]
    m = sums.metrics()
    assert m["HR@1"] == pytest.approx(1 / 3) and m["HR@3"] == pytest.approx(2 / 3)
    assert m["MRR"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    with pytest.raises(ValueError, match="scored NaN"):
        rankings(Fixed([0.0, float("nan"), 1.0, 0.0, 0.0]), table)


def test_report_command_rewrites_the_report_of_stored_rows(tmp_path):
    from click.testing import CliRunner

    from ccrec.cli import cli
    from ccrec.report import save_protocol

    save_protocol(tmp_path, {"future": "cis:3", "max_past": 10})
    save_row(tmp_path, "warm", "SASRec", hits([1, 0, 0, 0]))
    save_row(tmp_path, "warm", "CCRec", hits([1, 1, 0, 0]))
    result = CliRunner().invoke(cli, ["report", "--out-dir", str(tmp_path),
                                      "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "r.json").read_text())
    assert list(payload["warm"]) == ["CCRec", "SASRec"]  # the table order, not the file order
    assert payload["protocol"] == {"future": "cis:3", "max_past": 10}
    assert payload["significance"]["warm"]["best_other"] == "SASRec"
    with pytest.raises(ValueError, match="holds rows of the task"):
        save_protocol(tmp_path, {"future": "all", "max_past": 10})


def test_report_html_is_self_contained_with_tables_plots_and_secondary(tmp_path):
    rows = {"warm": {"Popularity": hits([1, 0] * 20), "CCRec": hits([1] * 40)}}
    secondary = build_report({"warm": {"Popularity": hits([1, 1, 1, 0]),
                                       "CCRec": hits([1, 1, 0, 0])}},
                             {"future": "all", "max_past": 10})
    payload = write_report(rows, tmp_path, "synthetic",
                           protocol={"future": "cis:3", "max_past": 10}, secondary=secondary)
    assert payload["secondary"]["protocol"] == {"future": "all", "max_past": 10}
    assert payload["secondary"]["n"] == {"warm": 4}
    assert payload["secondary"]["warm"]["Popularity"]["HR@1"] == 0.75
    page = (tmp_path / "report.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert page.count('src="data:image/png;base64,') == 1  # the warm plot, embedded
    assert "warm <small>(n = 40 users)</small>" in page
    # CCRec 40/40 against Popularity 20/40: best, significant, bold, and said so
    assert "<td class=best>1.000 <small>[1.000, 1.000]</small></td>" in page
    assert "HR@1 vs Popularity: Δ = +0.500" in page and "(significantly better)" in page
    assert "Secondary task: future <code>all</code>" in page
    secondary_part = page.split("Secondary task")[1]
    assert "<td>0.750 <small>" in secondary_part and "class=best" not in secondary_part
    assert "## warm (n = 4 users)" in (tmp_path / "results.md").read_text()
