"""The stream worker's Prometheus metrics (streaming/metrics.py), served beside /healthz,
after a real run: embedded broker, Feast (SQLite), valid events and one for the DLQ."""

from __future__ import annotations

import json
import urllib.request
import uuid

from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from stream_helpers import make_events, wait_committed, worker_config

from features.store import open_store
from streaming.events import Vocabulary
from streaming.health import Liveness
from streaming.metrics import QUANTILES, worker_registry
from streaming.worker import StreamWorker


def _samples(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_worker_exports_what_it_did(broker, topics, vocab_dir, tmp_path) -> None:
    events = make_events(30, 5, seed=4)
    unknown = json.dumps({**events[0], "item_id": "i999", "event_id": "x1"}).encode()
    store = open_store(tmp_path / "store", "sqlite", project=f"m_{uuid.uuid4().hex[:8]}")
    worker = StreamWorker(broker, store, Vocabulary.from_prepared(vocab_dir),
                          worker_config(topics)).start()
    producer = KafkaProducer(**broker.config())
    for event in events:
        producer.send(topics["topic"], json.dumps(event).encode(), key=event["user_id"].encode())
    producer.send(topics["topic"], unknown, key=b"u0")
    producer.flush()
    producer.close()
    wait_committed(broker, topics, len(events) + 1)

    liveness = Liveness(60)
    port = liveness.serve(0, host="127.0.0.1", registry=worker_registry(worker))
    try:
        samples = _samples(port)
    finally:
        liveness.close()
        worker.stop()
    assert worker.error is None
    assert samples[("ccrec_stream_records_total", (("outcome", "applied"),))] == 30
    assert samples[("ccrec_stream_records_total", (("outcome", "duplicate"),))] == 0
    assert samples[("ccrec_stream_records_total", (("outcome", "dlq"),))] == 1
    assert samples[("ccrec_stream_dlq_total", (("reason", "unknown item"),))] == 1
    assert samples[("ccrec_stream_batches_total", ())] == worker.stats.batches >= 1
    assert samples[("ccrec_stream_store_failures_total", ())] == 0
    # everything is consumed: no lag on any partition the worker read from
    lag = {dict(labels)["partition"]: value for (name, labels), value in samples.items()
           if name == "ccrec_stream_consumer_lag"}
    assert lag == {str(p): 0 for _, p in worker._last_offsets}
    recent = sorted(worker.stats.freshness_ms)
    assert len(recent) == 31
    for q in QUANTILES:
        value = samples[("ccrec_stream_freshness_seconds", (("quantile", str(q)),))]
        assert value == recent[min(30, int(q * 31))] / 1000
