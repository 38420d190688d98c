"""benchmarks/goals.py: the goals table from result files (hand-made ones here)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

GOALS = Path(__file__).resolve().parents[1] / "benchmarks" / "goals.py"


@pytest.fixture
def goals(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("goals", GOALS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def write(path: Path, name: str, data: dict) -> None:
    (path / f"{name}.json").write_text(json.dumps(data))


def test_each_goal_is_judged_from_its_file(goals, tmp_path):
    write(tmp_path, "train_speed", {"inference_ms_p50": 0.9, "inference_ms_p99": 2.5,
                                    "cascade_seconds_ml1m": 412.0, "load_average_1min": 3.2,
                                    "examples": {"m1": 45567}, "when": "2026-11-30 00:10"})
    # a curated file: the current run first
    write(tmp_path, "serve", {"runs": [
        {"concurrency": {"1": {"serve_p50_ms": 7.0, "serve_p99_ms": 21.0},
                         "8": {"serve_qps": 240.0, "plain_qps": 300.0}},
         "p99_ratio_c1": 1.9, "click_to_refresh_ms": {"p99": 140.0}},
        {"p99_ratio_c1": 9.9}]})
    write(tmp_path, "elastic", {"grew": True, "node_loss_recovered": True, "epochs_lost": 0,
                                "serve_replicas": {"at_rest": 3, "max": 7, "after": 3,
                                                   "scaled_up": True, "scaled_down": True},
                                "machine": {"load_avg_1m_start": 9.5, "load_avg_1m_end": 12.0}})
    rows = {goal: (measured, verdict, load) for _, goal, measured, verdict, load in goals.rows()}
    assert rows["one-user inference p50 ≤ 1 ms"] == ("0.9", "met", "3.2 (2026-11-30)")
    assert rows["one-user inference p99 ≤ 2 ms"][:2] == ("2.5", "**not met**")
    assert rows["ML-1M cascade trains in ≤ 600 s (rolling-origin examples)"][:2] == (
        "412.0 (45,567 M1 examples per epoch)", "met")
    assert rows["Serve / one process p99 ratio at c=1 ≤ 2.0"][:2] == ("1.9", "met")
    assert rows["Serve p99 ≤ 20 ms at c=1"][:2] == ("21.0", "**not met**")
    assert rows["Serve QPS at c=8 ≥ 0.8× one process"][:2] == ("0.8", "met")  # 240 / 300
    assert rows["Serve adds replicas under a load ramp and removes them"] == (
        "3 → 7 → 3", "met", "9.5–12.0")
    # no stream.json, no gpu_check.json
    assert rows["freshness p99 ≤ 100 ms at 1,000 events/s"][:2] == ("not measured", "—")
    assert rows["one epoch of each stage on CUDA (benchmarks/gpu_check.py)"][:2] == (
        "not run (no GPU machine)", "—")


def test_a_cascade_time_without_its_task_size_is_not_judged(goals, tmp_path):
    write(tmp_path, "train_speed", {"cascade_seconds_ml1m": 94.0})
    rows = {goal: (measured, verdict) for _, goal, measured, verdict, _ in goals.rows()}
    assert rows["ML-1M cascade trains in ≤ 600 s (rolling-origin examples)"] == (
        "94.0 (an earlier, smaller task)", "—")


def test_write_replaces_only_the_marked_part(goals, tmp_path, monkeypatch):
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Title\n\n{goals.START}\nold table\n{goals.END}\n\nnotes\n")
    monkeypatch.setattr(sys, "argv", ["goals.py", "--write", str(doc)])
    goals.main()
    text = doc.read_text()
    assert text.startswith("# Title\n\n") and text.endswith(f"{goals.END}\n\nnotes\n")
    assert "old table" not in text and "| # | goal |" in text
