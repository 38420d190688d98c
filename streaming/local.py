"""The real-time loop on one machine: embedded broker → stream worker → Feast.

:class:`LocalLoop` starts the broker (Tansu), a Feast store and the stream
worker (a thread of this process) and stops them in reverse order; the
serving API reads the store it fills. :func:`click_to_refresh` measures the
whole loop from the outside: it posts a click to the API and polls the
recommendation until it reflects that click (the feature timestamp reaches
the click's time). The loop test, the serving benchmark and the demo use both.
:meth:`LocalLoop.ingest` streams a batch of events (a data set replayed,
:func:`streaming.events.dataset_events`) through the loop and waits until the worker
has handled them: the continual-training benchmark and the demo's retraining step.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx


@dataclass
class LocalLoop:
    """Broker + Feast + stream worker for a prepared data set.

    Args:
        prepared: the prepared data set (name or directory) whose vocabulary the
            worker validates against (the bundle's vocabulary).
        feast_root: the Feast store root (created and applied).
        environment: the Feast environment (``sqlite`` or ``redis``).
        bootstrap_servers: an existing broker; None starts the embedded one.
    """

    prepared: str | Path
    feast_root: Path
    environment: str = "sqlite"
    bootstrap_servers: str | None = None
    project: str = field(default_factory=lambda: f"ccrec_{uuid.uuid4().hex[:8]}")
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __enter__(self) -> LocalLoop:
        from features.store import open_store
        from streaming.broker import EmbeddedBroker, KafkaSettings
        from streaming.events import Vocabulary, ensure_topics
        from streaming.worker import StreamWorker, WorkerConfig

        try:
            if self.bootstrap_servers is None:
                broker = self._stack.enter_context(EmbeddedBroker())
                self.bootstrap_servers = broker.bootstrap_servers
            self.settings = KafkaSettings.from_env(self.bootstrap_servers)
            ensure_topics(self.settings)
            self.store = open_store(self.feast_root, self.environment, project=self.project)
            config = WorkerConfig(
                group_id=f"ccrec-features-{uuid.uuid4().hex[:6]}", max_poll_interval_ms=4000,
                session_timeout_ms=4000, heartbeat_interval_ms=500, poll_timeout_ms=20,
                retry_initial_s=0.1, retry_max_s=1.0)
            vocab = Vocabulary.from_prepared(self.prepared)
            self.worker = StreamWorker(self.settings, self.store, vocab, config).start()
            self._stack.callback(self.worker.stop)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def ingest(self, events: Iterable[dict[str, Any]], timeout: float = 1800.0) -> int:
        """Produce ``events`` (wire format) to the loop's topic and wait until the worker
        has handled as many records more (applied, duplicates or dead-lettered) than it
        had before; returns how many were sent.

        Raises:
            TimeoutError: the worker did not handle them within ``timeout`` seconds.
        """
        from streaming.events import EventProducer, replay

        stats = self.worker.stats

        def handled() -> int:
            return stats.applied + stats.duplicates + sum(stats.dlq.values())

        before = handled()
        with EventProducer(self.settings) as producer:
            sent = replay(producer, iter(events))
        deadline = time.monotonic() + timeout
        while handled() < before + sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the stream worker handled {handled() - before} of {sent} "
                                   f"records after {timeout:.0f}s")
            time.sleep(0.2)
        return sent

    @property
    def features(self) -> dict[str, Any]:
        """The Ingress's feature-source config for this store."""
        return {"source": "feast", "environment": self.environment,
                "root": str(self.feast_root), "project": self.project}


def _epoch(value: str | None) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else 0.0


async def click_to_refresh(client: httpx.AsyncClient, event: dict[str, Any], k: int = 3,
                           timeout: float = 60.0, poll_s: float = 0.01
                           ) -> tuple[float, dict[str, Any]]:
    """POST the click, then poll /v1/recommendations until it includes the click.

    Returns the seconds from sending the click to the first refreshed answer,
    and that answer.
    """
    clicked = float(event["timestamp"]) if not isinstance(event["timestamp"], str) \
        else _epoch(event["timestamp"])
    started = time.perf_counter()
    r = await client.post("/v1/events", json=event)
    r.raise_for_status()
    while time.perf_counter() - started < timeout:
        rec = await client.post("/v1/recommendations", json={"user_id": event["user_id"], "k": k})
        rec.raise_for_status()
        body = rec.json()
        if _epoch(body["feature_timestamp"]) >= clicked:
            return time.perf_counter() - started, body
        await asyncio.sleep(poll_s)
    raise TimeoutError(f"no refreshed recommendation for {event['user_id']} after {timeout}s")
