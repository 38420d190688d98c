"""The online-accuracy join on a hand-built sequence (pure logic: no broker, no clock)."""

from __future__ import annotations

from collections import deque

import pandas as pd
import pytest

from ccrec.online import ROW_COLUMNS, format_table, load_log, online_table
from streaming.impressions import Impression
from streaming.online_accuracy import Click, Exporter, JoinConfig, OnlineJoin, write_rows

E0 = 1_000_000  # event time of the first click (s)
DAYS5 = 5 * 86_400


def imp(request_id: str, user: str, version: str, categories: list[str], t: float) -> Impression:
    return Impression(request_id, user, version, categories,
                      [1.0 - 0.1 * i for i in range(len(categories))], None, t)


def picked(rows: list[dict]) -> list[tuple]:
    return [(r["user_id"], r["model_version"], r["request_id"], r["category_id"], r["rank"],
             r["shown"], r["hit_at_1"], r["hit_at_3"]) for r in rows]


def hand_built_rows() -> list[dict]:
    join = OnlineJoin(JoinConfig(window_s=3600, ci_window_s=DAYS5, grace_s=2))
    rows = []
    join.impression(imp("A", "u1", "v1", ["c1", "c2", "c3"], 1000))
    assert join.click(Click("u1", "c2", E0, 1010))            # a new CI
    assert not join.click(Click("u1", "c2", E0 + 60, 1020))   # the same CI continues
    assert join.due(1011) == []                               # still within the grace
    rows += join.due(1013)
    assert picked(rows) == [("u1", "v1", "A", "c2", 2, 3, False, True)]
    # A new CI, but the last answer before it (A) is already scored: no row.
    assert join.click(Click("u1", "c4", E0 + 120, 1030))
    assert join.due(1040) == []
    join.impression(imp("B", "u1", "v2", ["c4", "c1"], 1040))
    assert not join.click(Click("u1", "c4", E0 + 200, 1050))  # c4's CI continues
    assert join.click(Click("u1", "c1", E0 + 300, 1060))
    rows += join.due(1100)
    # An answer older than the window: no row.
    join.impression(imp("C", "u1", "v2", ["c5", "c6", "c1"], 1070))
    assert join.click(Click("u1", "c5", E0 + 400, 1070 + 3601))
    assert join.due(1070 + 3700) == []
    # c2 again more than 5 days after its CI started: a new CI.
    join.impression(imp("D", "u1", "v2", ["c2", "c3", "c4"], 9000))
    assert join.click(Click("u1", "c2", E0 + DAYS5 + 1, 9001))
    rows += join.due(9003)
    # The impression arrives after the click that followed it: the grace covers it.
    assert join.click(Click("u2", "c1", E0, 2000))
    join.impression(imp("E", "u2", "v2", ["c1", "c2", "c3"], 1999))
    # A click with no answer served before it.
    assert join.click(Click("u3", "c1", E0, 2000))
    rows += join.due(2002.5)
    # A polling client: many answers right after the click push the one before it out of
    # the user's recent impressions before the grace ends; the join still has it.
    join.impression(imp("F", "u4", "v2", ["c6", "c1", "c2"], 3000))
    assert join.click(Click("u4", "c1", E0, 3000.5))
    for i in range(40):
        join.impression(imp(f"F{i}", "u4", "v2", ["c1"], 3001 + 0.01 * i))
    rows += join.due(3003)
    # The answer before the click arrives after the click and after many later answers.
    assert join.click(Click("u5", "c2", E0, 4000.5))
    for i in range(40):
        join.impression(imp(f"G{i}", "u5", "v2", ["c1"], 4001 + 0.01 * i))
    join.impression(imp("G", "u5", "v2", ["c2", "c1"], 4000))
    rows += join.due(4003)
    assert join.pending == deque() and join.waiting == {}  # nothing left waiting
    return rows


def test_join_hand_built_sequence() -> None:
    assert picked(hand_built_rows()) == [
        ("u1", "v1", "A", "c2", 2, 3, False, True),
        ("u1", "v2", "B", "c1", 2, 2, False, True),
        ("u1", "v2", "D", "c2", 1, 3, True, True),
        ("u2", "v2", "E", "c1", 1, 3, True, True),
        ("u4", "v2", "F", "c1", 2, 3, False, True),
        ("u5", "v2", "G", "c2", 1, 2, True, True),
    ]


def test_exporter_running_values() -> None:
    exporter = Exporter()
    exporter.add(hand_built_rows()[:4])  # A, B, D, E
    value = exporter.registry.get_sample_value
    assert value("ccrec_online_accuracy", {"model_version": "v1", "metric": "HR@1"}) == 0.0
    assert value("ccrec_online_accuracy", {"model_version": "v1", "metric": "Precision@3"}) \
        == pytest.approx(1 / 3)
    assert value("ccrec_online_accuracy", {"model_version": "v2", "metric": "HR@1"}) \
        == pytest.approx(2 / 3)
    # v2: 3 hits in the top 3 over 2 + 3 + 3 categories shown.
    assert value("ccrec_online_accuracy", {"model_version": "v2", "metric": "Precision@3"}) \
        == pytest.approx(3 / 8)
    assert value("ccrec_online_points_total", {"model_version": "v2"}) == 3
    assert value("ccrec_online_hits_total", {"model_version": "v2", "k": "1"}) == 2


def test_online_table_from_the_log(tmp_path) -> None:
    rows = hand_built_rows()[:4]  # A, B, D, E
    write_rows(tmp_path, rows[:2])
    write_rows(tmp_path, rows[2:])
    log = load_log(tmp_path)
    assert list(log.columns) == list(ROW_COLUMNS) and len(log) == 4
    table = online_table(log).set_index("model_version")
    assert list(table.index) == ["v1", "v2"]
    v2 = table.loc["v2"]
    assert (v2["users"], v2["points"]) == (2, 3)
    assert v2["HR@1"] == pytest.approx(2 / 3) and v2["Precision@3"] == pytest.approx(3 / 8)
    # Two users resampled: (u1, u1) gives HR@1 1/2, (u2, u2) 1, (u1, u2) 2/3.
    assert (v2["HR@1_lo"], v2["HR@1_hi"]) == (pytest.approx(0.5), pytest.approx(1.0))
    assert table.loc["v1", "HR@3"] == 1.0
    assert "| v2 | 2 | 3 | 0.667 [0.500, 1.000]" in format_table(table.reset_index())


def test_empty_log(tmp_path) -> None:
    assert online_table(load_log(tmp_path)).empty
    assert list(pd.DataFrame(columns=list(ROW_COLUMNS)).columns) == list(load_log(tmp_path))


def test_report_online_command(tmp_path) -> None:
    from click.testing import CliRunner

    from ccrec.cli import cli

    write_rows(tmp_path / "log", hand_built_rows())
    plot = tmp_path / "online.png"
    result = CliRunner().invoke(cli, ["report", "online", "--log-dir", str(tmp_path / "log"),
                                      "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "| v1 | 1 | 1 | 0.000 [0.000, 0.000] | 1.000 [1.000, 1.000]" in result.output
    assert plot.stat().st_size > 0
    assert CliRunner().invoke(cli, ["report"]).exit_code == 2  # neither --out-dir nor online
