"""The impression log against a real (embedded) broker that is paused: nothing is lost
silently; what the bounded buffer cannot hold is dropped, counted and exported."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry, Counter
from stream_helpers import wait_for

from streaming.broker import EmbeddedBroker, KafkaSettings
from streaming.events import ensure_topics
from streaming.impressions import Impression, ImpressionLog


def impression(i: int) -> Impression:
    return Impression(f"r{i}", f"u{i % 7}", "v1", ["c1", "c2", "c3"], [0.5, 0.3, 0.2], 1_700_000,
                      1_700_000_100.0 + i)


def consumed(settings: KafkaSettings, topic: str, expected: int) -> list[dict]:
    consumer = KafkaConsumer(topic, **settings.config(), auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        out = []
        deadline = time.monotonic() + 20
        while len(out) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out += [json.loads(r.value) for r in batch]
        for batch in consumer.poll(timeout_ms=1000).values():  # anything beyond expected
            out += [json.loads(r.value) for r in batch]
        return out
    finally:
        consumer.close()


@pytest.fixture
def paused_broker():
    """A broker of its own (it gets SIGSTOPped) and a function that pauses it."""
    with EmbeddedBroker() as running:
        pid = running.process.pid

        def pause(on: bool) -> None:
            os.kill(pid, signal.SIGSTOP if on else signal.SIGCONT)

        try:
            yield KafkaSettings(running.bootstrap_servers), pause
        finally:
            pause(False)


def test_slow_broker_loses_nothing_and_counts_drops(paused_broker) -> None:
    settings, pause = paused_broker
    topic = f"ccrec.recommendations.t{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, 2, topics=(topic,))
    registry = CollectorRegistry()
    counter = Counter("ccrec_impressions_total", "", ["outcome"], registry=registry)
    log = ImpressionLog(settings, capacity=50, batch=10, topic=topic,
                        count=lambda outcome, n: counter.labels(outcome).inc(n))
    try:
        assert log.offer(impression(0))
        wait_for(lambda: log.counts["produced"] == 1)
        pause(True)
        # A slow broker within the buffer's room: every offer is taken.
        assert all(log.offer(impression(i)) for i in range(1, 41))
        time.sleep(1.0)
        assert log.counts["produced"] == 1  # nothing got through the paused broker
        # Beyond the room: offers are dropped at once, and counted.
        accepted = {i: log.offer(impression(i)) for i in range(41, 141)}
        dropped = [i for i, ok in accepted.items() if not ok]
        assert dropped and dropped == list(range(dropped[0], 141))  # the newest are dropped
        pause(False)
        wait_for(lambda: log.buffered == 0)
    finally:
        pause(False)
        log.close(timeout=20)
    kept = 141 - len(dropped)
    assert log.counts == {"produced": kept, "dropped": len(dropped), "failed": 0}
    assert registry.get_sample_value("ccrec_impressions_total", {"outcome": "dropped"}) \
        == len(dropped)
    assert registry.get_sample_value("ccrec_impressions_total", {"outcome": "produced"}) == kept
    messages = consumed(settings, topic, kept)
    ids = sorted(int(m["request_id"][1:]) for m in messages)
    assert ids == sorted(set(range(141)) - set(dropped))  # every accepted one, once
    first = Impression.from_wire(next(m for m in messages if m["request_id"] == "r0"))
    assert first == impression(0)
