"""Prometheus metrics of the stream worker, read from its :class:`~streaming.worker.Stats`
when scraped: the loop itself counts nothing more than it already does.

``ccrec stream run --health-port P`` serves them at ``GET /metrics`` beside ``/healthz``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

#: How many of the latest events the freshness quantiles cover.
FRESHNESS_WINDOW = 1000
QUANTILES = (0.5, 0.95, 0.99)


class WorkerCollector:
    """A prometheus_client collector over one :class:`~streaming.worker.StreamWorker`."""

    def __init__(self, worker) -> None:
        self.worker = worker

    def collect(self):
        stats = self.worker.stats
        records = CounterMetricFamily("ccrec_stream_records",
                                      "Records the worker consumed, by outcome.",
                                      labels=["outcome"])
        records.add_metric(["applied"], stats.applied)
        records.add_metric(["duplicate"], stats.duplicates)
        records.add_metric(["dlq"], sum(stats.dlq.values()))
        yield records
        dlq = CounterMetricFamily("ccrec_stream_dlq",
                                  "Records sent to the dead-letter topic, by reason.",
                                  labels=["reason"])
        for reason, count in sorted(stats.dlq.items()):
            dlq.add_metric([reason], count)
        yield dlq
        yield CounterMetricFamily("ccrec_stream_batches", "Batches applied and committed.",
                                  value=stats.batches)
        yield CounterMetricFamily("ccrec_stream_store_failures",
                                  "Feature store writes that failed and were retried.",
                                  value=stats.store_failures)
        freshness = GaugeMetricFamily(
            "ccrec_stream_freshness_seconds",
            f"Produce → readable in the online store, over the latest {FRESHNESS_WINDOW} "
            "events, by quantile.", labels=["quantile"])
        recent = sorted(list(stats.freshness_ms)[-FRESHNESS_WINDOW:])
        for q in QUANTILES if recent else ():
            freshness.add_metric([str(q)], recent[min(len(recent) - 1, int(q * len(recent)))]
                                 / 1000)
        yield freshness
        lag = GaugeMetricFamily(
            "ccrec_stream_consumer_lag",
            "Records on the topic after the last one this worker consumed, by partition.",
            labels=["partition"])
        for partition, value in sorted(self.lag().items()):
            lag.add_metric([str(partition)], value)
        yield lag

    def lag(self) -> dict[int, int]:
        """Partition → the broker's high-water mark minus the next offset to consume, for the
        assigned partitions this worker has consumed from (the mark comes with each fetch)."""
        consumer, out = self.worker.consumer, {}
        if consumer is None:
            return out
        consumed = dict(self.worker._last_offsets)
        for tp in list(self.worker.assignment):
            last = consumed.get((tp.topic, tp.partition))
            try:
                high = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - revoked meanwhile: no figure this scrape
                continue
            if last is not None and high is not None:
                out[tp.partition] = max(0, high - last - 1)
        return out


def worker_registry(worker) -> CollectorRegistry:
    """A registry holding the worker's metrics."""
    registry = CollectorRegistry()
    registry.register(WorkerCollector(worker))
    return registry
