"""The demo's continuous-training step (demo/retrain.py) through the real parts, at the
scale of the Complete Journey fixture: a served first model published in the registry,
the fixture's events streamed through the embedded broker, the stream worker and Feast,
one cycle on the offline log, and the single-process host behind uvicorn, which follows
the registry's ``current`` link and must answer with the published version."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from ccrec.config import load
from ccrec.console import console
from ccrec.data.adapters import load_complete_journey
from ccrec.data.prepare import PrepareConfig, prepare
from ccrec.data.prepared import load_prepared
from ccrec.models.cascade import CascadeConfig
from ccrec.registry import Registry
from ccrec.train.run import train_and_bundle
from demo.retrain import retrain, served_version
from features.reader import reader_from_config
from features.store import load_static_features
from serve.api import Clicks
from serve.auth import Authenticator
from serve.plain import PlainHost, serving
from serve.runtime import wait_ready
from streaming.continual import RetrainConfig
from streaming.local import LocalLoop

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
DEBUG = ROOT / "ccrec" / "configs" / "debug.yaml"
#: The fixture's year with a global cutoff in it (the first model's task).
TASK = PrepareConfig(cutoff_mode="global", cutoff="2017-09-01", test_fraction=0.3)


def test_the_cycle_publishes_and_the_running_service_switches(tmp_path):
    torch.set_num_threads(1)
    raw = load_complete_journey(ROOT / "tests" / "fixtures" / "complete-journey")
    prepared = load_prepared(prepare("complete-journey", TASK, raw=raw,
                                     out_dir=tmp_path / "complete-journey"))
    quick = [f"{stage}.epochs=1" for stage in ("train_sampler", "train_encoder", "train_scorer")]
    first = train_and_bundle(prepared.path, load(CascadeConfig, DEBUG, quick),
                             tmp_path / "bundles").path.name
    registry = Registry(tmp_path / "bundles")
    registry.publish(first, dataset=prepared.path.name)  # what the demo's training step does
    # a wide margin: this checks the step's wiring; the gate's decision has its own tests
    cycle = RetrainConfig(window_days=45, epochs=1, margin=1.0)
    events = len(prepared.events())
    with LocalLoop(prepared.path, tmp_path / "feast") as loop:
        load_static_features(loop.store, prepared)
        host = PlainHost(registry.root / "current", reader_from_config(loop.features),
                         Clicks(loop.bootstrap_servers), auth=Authenticator(insecure=True))
        try:
            with serving(host.app) as url:
                wait_ready(url, timeout=60)
                with console.capture() as captured:
                    result = retrain(loop, url, registry.root, prepared.path, config=cycle,
                                     events=events)
                user = str(raw.events["user_id"].iloc[0])
                answer = httpx.post(f"{url}/v1/recommendations",
                                    json={"user_id": user, "k": 3}, timeout=30).json()
                now = served_version(url)
        finally:
            host.slots.close()
        assert loop.worker.error is None
        # every streamed event reached the worker, and the stream's log is what it trained on
        assert loop.worker.stats.applied + loop.worker.stats.duplicates == events

    assert result.published and result.version != first
    assert (registry.current, registry.previous) == (result.version, first)
    assert result.examples["new"] > 0 and result.gate["n"] == result.examples["gate"] > 0
    # the running service answers with the published version, without a redeploy
    assert now == answer["model_version"] == result.version
    output = " ".join(captured.get().split())
    assert f"the service serves {first} (GET /readyz)" in output
    assert f"newest {events:,} events of complete-journey" in output
    assert f"candidate {result.version}: every stage warm-started from {first}" in output
    assert f"gate: candidate HR@1 {result.gate['candidate']:.3f} vs served " \
           f"{result.gate['current']:.3f}" in output and "→ published" in output
    assert f"the service now serves {result.version} (GET /readyz" in output
