"""Continuous training: a first model from the stream's log, then a warm-started cycle
that both serving stages follow, and a rollback."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner
from stream_helpers import wait_for
from test_offline import CONFIG, stream_events, wire

from ccrec.bundle import Bundle
from ccrec.cli import cli
from ccrec.data.adapters import load_complete_journey
from ccrec.data.prepare import prepare
from ccrec.data.prepared import load_prepared
from ccrec.registry import Registry
from features.store import load_static_features, open_store
from serve.runtime import ModelSlots
from streaming.continual import GATE, RetrainConfig, parse_every, retrain_cycle

DEBUG = str(Path(__file__).parents[2] / "ccrec" / "configs" / "debug.yaml")


def test_a_cycle_fine_tunes_the_served_model_and_both_stages_switch(tmp_path):
    torch.set_num_threads(1)
    raw = load_complete_journey(Path(__file__).parents[1] / "fixtures" / "complete-journey")
    prepared = prepare("complete-journey", CONFIG, raw=raw, out_dir=tmp_path / "prepared")
    events = wire(raw.events)
    early = sum(e["timestamp"] < 1506816000 for e in events)  # before 2017-10-01
    store = open_store(tmp_path / "store")
    stream_events(store, prepared, events[:early], [slice(0, early)])
    load_static_features(store, load_prepared(prepared))
    bundles = tmp_path / "bundles"
    config = RetrainConfig(window_days=45, epochs=2, margin=1.0, config=DEBUG)

    first = retrain_cycle(store, bundles, config, prepared=prepared)
    registry = Registry(bundles)
    assert first.published and first.gate is None and registry.current == first.version
    assert first.examples["new"] > 100 and first.examples["replayed"] == 0
    # both stages serve the registry's current link
    sampler, scorer = (ModelSlots(bundles / "current", watch_s=0.05) for _ in range(2))
    assert sampler.current().version == scorer.current().version == first.version

    late = len(events) - early
    stream_events(store, prepared, events[early:], [slice(0, late)], first_offset=early)
    second = retrain_cycle(store, bundles, config)
    assert second.published and second.version != first.version
    assert second.cutoff > first.cutoff
    # new examples: origins after the first model's cutoff; a fifth of the older ones again
    examples = json.loads((bundles / "registry.json").read_text())[-1]["examples"]
    assert examples == second.examples and second.examples["new"] > 0
    assert second.gate["n"] == second.examples["gate"] > 0 and second.gate["margin"] == 1.0
    # the gate's users are held out from fine-tuning and early stopping alike
    cycle = load_prepared(sorted((bundles / ".cycles").glob("*/*"))[-1])
    gate_users = set(cycle.examples.loc[cycle.examples["split"].isin(GATE), "user"])
    rest = set(cycle.examples.loc[~cycle.examples["split"].isin(GATE), "user"])
    assert gate_users and not gate_users & rest
    candidate = Bundle.load(bundles / second.version)
    assert candidate.config.warm_start == str((bundles / first.version).resolve())
    assert (registry.current, registry.previous) == (second.version, first.version)
    wait_for(lambda: sampler.current().version == scorer.current().version == second.version,
             30, "both stages to load the published version")

    result = CliRunner().invoke(cli, ["rollback", "--bundles", str(bundles)])
    assert result.exit_code == 0, result.output
    assert f"serving {first.version}" in result.output
    wait_for(lambda: sampler.current().version == scorer.current().version == first.version,
             30, "both stages to roll back")
    for slots in (sampler, scorer):
        slots.close()


def test_the_interval_of_a_loop():
    assert [parse_every(t) for t in ("30s", "10m", "2h")] == [30, 600, 7200]
    for bad in ("10", "m", "-5m", "10d"):
        with pytest.raises(click.BadParameter, match="duration like|positive"):
            parse_every(bad)
    # `ccrec retrain` (an entry point of the ccrec command) says so before any work
    result = CliRunner().invoke(cli, ["retrain", "--bundles", "b", "--every", "10d"])
    assert result.exit_code == 2 and "'10d' is not a duration" in result.output
