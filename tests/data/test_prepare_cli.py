"""`ccrec data prepare` flags for the task: --future, --max-past, --cutoff-mode, --cutoff."""

import json

import pytest
from click.testing import CliRunner

from ccrec.cli import cli, main
from ccrec.data.prepared import load_prepared


def write_events(path):
    rows = [f"u{u},i{i},c{(i * u) % 3},{1_700_000_000 + i * 6 * 86_400}" for u in range(1, 9)
            for i in range(12)]
    path.write_text("user_id,item_id,category_id,timestamp\n" + "\n".join(rows) + "\n")
    return path


def test_flags_set_the_task_and_name_the_prepared_variant(tmp_path):
    path = write_events(tmp_path / "clicks.csv")
    result = CliRunner().invoke(cli, [
        "data", "prepare", "--dataset", f"events:{path}", "--future", "all",
        "--max-past", "3", "--cutoff-mode", "global", "--cutoff", "2023-12-01",
        "--set", "test_fraction=0.0"])
    assert result.exit_code == 0, result.output
    prepared = load_prepared(result.output.strip().splitlines()[-1])
    assert prepared.path.name == "events-clicks-all"
    assert prepared.meta["protocol"] == {"future": "all", "max_past": 3}
    assert prepared.meta["config"]["cutoff"] == "2023-12-01"
    assert prepared.examples["past_categories"].map(len).max() == 3
    stats = CliRunner().invoke(cli, ["data", "stats", "--dataset", f"events:{path}",
                                     "--future", "all", "--json"])
    assert json.loads(stats.output)["protocol"] == {"future": "all", "max_past": 3}


def test_a_bad_horizon_is_one_clear_error(tmp_path, capsys, monkeypatch):
    path = write_events(tmp_path / "clicks.csv")
    monkeypatch.setattr("sys.argv", ["ccrec", "data", "prepare", "--dataset",
                                     f"events:{path}", "--future", "cis:0"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "not one of 'cis:N'" in capsys.readouterr().err.replace("\n", " ")
