"""`ccrec stream run` builds its WorkerConfig from WorkerConfig's own defaults."""

from __future__ import annotations

import inspect

from streaming.cli import run_cmd, worker_config
from streaming.config import WorkerConfig


def _config(*args: str) -> WorkerConfig:
    params = run_cmd.make_context("run", ["--dataset", "d", *args]).params
    return worker_config(**{name: params[name]
                            for name in inspect.signature(worker_config).parameters})


def test_no_options_give_the_worker_defaults() -> None:
    assert _config() == WorkerConfig()


def test_options_set_their_fields_and_keep_the_rest() -> None:
    config = _config("--group-id", "g", "--topic", "t", "--dlq-topic", "t.dlq",
                     "--batch-size", "7", "--session-timeout-ms", "6000", "--max-past", "4",
                     "--max-poll-interval-ms", "9000")
    assert (config.group_id, config.topic, config.dlq_topic, config.batch_size) == (
        "g", "t", "t.dlq", 7)
    assert (config.session_timeout_ms, config.heartbeat_interval_ms) == (6000, 2000)
    assert config.max_poll_interval_ms == 9000
    assert config.sequence.max_past == 4
    assert config.sequence.window_days == WorkerConfig().sequence.window_days
    assert config.state_cache_users == WorkerConfig().state_cache_users


def test_feast_options_parse() -> None:
    params = run_cmd.make_context("run", ["--dataset", "d", "--feast-env", "production",
                                          "--root", "/data/feast"]).params
    assert (params["feast_env"], str(params["root"]), params["project"]) == (
        "production", "/data/feast", None)


def test_a_bundle_without_items_is_a_clear_error(tmp_path) -> None:
    """Bundles saved before they carried the item vocabulary: the worker says so."""
    import json

    from click.testing import CliRunner

    (tmp_path / "vocab.json").write_text(json.dumps(
        {"categories": ["<pad>", "c1"], "user_features": {}, "num_items": 3}))
    result = CliRunner().invoke(run_cmd, ["--dataset", str(tmp_path)])
    assert result.exit_code == 1
    assert "has no item vocabulary ('items')" in result.output and str(tmp_path) in result.output
    missing = CliRunner().invoke(run_cmd, ["--dataset", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and "run `ccrec data prepare` first" in missing.output
