import json

from click.testing import CliRunner

from ccrec.cli import cli


def write_events(path):
    rows = [f"u{u},i{i},c{(i * u) % 3},{1_700_000_000 + i * 6 * 86_400}" for u in range(1, 9)
            for i in range(12)]
    path.write_text("user_id,item_id,category_id,timestamp\n" + "\n".join(rows) + "\n")


def test_data_stats_json_has_table2_columns(tmp_path):
    path = tmp_path / "clicks.csv"
    write_events(path)
    runner = CliRunner()
    prepared = runner.invoke(cli, ["data", "prepare", "--dataset", f"events:{path}",
                                   "--set", "test_fraction=0.0"])
    assert prepared.exit_code == 0, prepared.output
    result = runner.invoke(cli, ["data", "stats", "--dataset", f"events:{path}", "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    train = stats["splits"]["train"]
    assert train["users"] == 8 and train["categories"] == 3 and train["items"] == 12
    assert set(train["past_actions"]) == {"mean", "std"}


def test_unknown_override_is_rejected(tmp_path):
    path = tmp_path / "clicks.csv"
    write_events(path)
    result = CliRunner().invoke(
        cli, ["data", "prepare", "--dataset", f"events:{path}", "--set", "sequence.k=3"]
    )
    assert result.exit_code != 0
    assert "unknown key(s) ['k']" in str(result.exception)
