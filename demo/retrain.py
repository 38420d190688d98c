"""The demo's continuous-training step: the stream goes on, one ``ccrec retrain`` cycle
learns from what it wrote, and the running service switches to the new version by itself.

1. **stream**: the newest :data:`STREAM_EVENTS` events of the prepared data set, re-timed
   so that the last one happens now (their gaps kept), go through the real loop: the
   broker, the stream worker, Feast's online store and offline log
   (:meth:`streaming.local.LocalLoop.ingest`);
2. **cycle**: :func:`streaming.continual.retrain_cycle` on that log, with the demo's
   :data:`RETRAIN` settings: the examples rebuilt from the log, every stage warm-started
   from the served bundle and fine-tuned, the gate on the newest window's held-out gate
   users, and publication (the registry re-points ``current``) only if the gate passes;
3. **rollout**: the Sampler and the Scorer follow the bundles root's ``current`` link
   (:class:`serve.runtime.ModelSlots`); the step asks the service (``GET /readyz``)
   which version both stages serve before and after.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from ccrec.console import console
from streaming.continual import CycleResult, RetrainConfig, retrain_cycle
from streaming.events import dataset_events
from streaming.local import LocalLoop

if TYPE_CHECKING:
    from ccrec.train.stage_runner import RayConfig

#: The data set's newest events the stream replays before the cycle (ML-1M: June 2001 to
#: February 2003, about 800 users).
STREAM_EVENTS = 50_000
#: The demo's cycle. ML-1M's newest months are sparse: a 90-day window with 40 % of its
#: users held out for the gate and 30 % of the rest validating (early stopping) gives the
#: gate about 80 users; two fine-tuning epochs per stage; publish unless HR@1 on the gate's
#: users drops by more than 0.02.
RETRAIN = RetrainConfig(window_days=90, gate_fraction=0.4, valid_fraction=0.3, epochs=2,
                        margin=0.02)


def served_version(url: str) -> str | None:
    """The version both serving stages hold, as the service reports it (``GET /readyz``;
    ``a/b`` while the stages differ)."""
    return httpx.get(f"{url}/readyz", timeout=10).json()["model"]["version"]


def wait_for_version(url: str, version: str, timeout: float = 120.0) -> str:
    """Poll the service until both stages serve ``version``; the version it reports."""
    deadline = time.monotonic() + timeout
    while (served := served_version(url)) != version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the service still serves {served}, not {version}, "
                               f"after {timeout:.0f}s")
        time.sleep(0.5)
    return served


def retrain(loop: LocalLoop, url: str, bundles_root: Path, prepared: Path, *,
            config: RetrainConfig = RETRAIN, events: int = STREAM_EVENTS,
            ray_config: RayConfig | None = None) -> CycleResult:
    """Stream the newest ``events`` of the ``prepared`` data set through ``loop``, run one
    cycle (``config``) on the bundles root whose ``current`` the service at ``url``
    follows, and wait until the service serves what the registry serves; the cycle's
    result. ``ray_config``: each stage as a Ray Train job (None: in this process)."""
    before = served_version(url)
    console.print(f"      the service serves {before} (GET /readyz)")
    started = time.perf_counter()
    sent = loop.ingest(dataset_events(prepared, events, newest=True, end=time.time()))
    console.print(f"      stream: the newest {sent:,} events of {prepared.name}, re-timed to end "
                  f"now → Kafka → stream worker → Feast offline log "
                  f"({time.perf_counter() - started:.0f}s)")
    result = retrain_cycle(loop.store, bundles_root, config, ray_config=ray_config)
    examples = result.examples
    console.print(f"      cycle: {examples['new']:,} new + {examples['replayed']:,} replayed "
                  f"training examples; {examples['valid']} validation and {examples['gate']} "
                  f"gate users in the newest {config.window_days:g} days")
    if result.version is None:
        console.print(f"      no candidate: the log has no example to train or to gate on; "
                      f"still serving {before}")
        return result
    console.print(f"      candidate {result.version}: every stage warm-started from {before} "
                  f"and fine-tuned ({result.seconds['train']:.0f}s)")
    verdict = result.gate
    if verdict is not None:
        low, high = verdict["diff_ci"]
        console.print(f"      gate: candidate {verdict['metric']} {verdict['candidate']:.3f} vs "
                      f"served {verdict['current']:.3f} (diff {verdict['diff']:+.3f}, 95 % "
                      f"[{low:+.3f}, {high:+.3f}], n = {verdict['n']}; publish unless it "
                      f"drops by more than {verdict['margin']:g}) → "
                      + ("[green]published[/]" if result.published else "[yellow]rejected[/]"))
    after = wait_for_version(url, result.served)
    if result.published:
        console.print(f"      the service now serves {after} (GET /readyz; hot-reloaded from "
                      f"{bundles_root.name}/current)")
    else:
        console.print(f"      the gate kept the served model: the service still serves {after} "
                      f"(candidate {result.version} recorded as rejected)")
    return result
