"""Prometheus metrics of one serving process (its own registry, scraped at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
           1.0, 2.0, 5.0)
AGE_BUCKETS = (0.1, 0.5, 1, 5, 30, 60, 300, 3600, 86400, 7 * 86400, 365 * 86400)


class Metrics:
    """Request latency per route, stage latency per deployment, counts, model, feature age."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_latency = Histogram(
            "ccrec_request_latency_seconds", "HTTP request latency by route.", ["route"],
            buckets=BUCKETS, registry=r)
        self.stage_latency = Histogram(
            "ccrec_stage_latency_seconds",
            "Latency of each stage (deployment) as seen by the ingress.", ["stage"],
            buckets=BUCKETS, registry=r)
        self.requests = Counter("ccrec_requests_total", "HTTP requests by route and status.",
                                ["route", "status"], registry=r)
        self.errors = Counter("ccrec_errors_total", "Server-side errors (5xx) by route.",
                              ["route"], registry=r)
        self.recommendations = Counter(
            "ccrec_recommendations_total", "Answers by kind: warm, or the cold-start prior.",
            ["kind"], registry=r)
        self.model_info = Gauge("ccrec_model_info", "The served model bundle version (value 1).",
                                ["version"], registry=r)
        self.feature_age = Histogram(
            "ccrec_feature_age_seconds", "Age of the user's online features when read.",
            buckets=AGE_BUCKETS, registry=r)
        self.feature_errors = Counter(
            "ccrec_feature_errors_total",
            "Feature store reads that failed (answered 503 with the popularity fallback).",
            registry=r)
        self.events = Counter("ccrec_events_produced_total", "Click events produced to Kafka.",
                              registry=r)
        self.impressions = Counter(
            "ccrec_impressions_total", "Answers in the impression log by outcome: produced, "
            "dropped (buffer full) or failed (not acknowledged).", ["outcome"], registry=r)
        self._version: str | None = None

    def set_model_version(self, version: str | None) -> None:
        if version == self._version or version is None:
            return
        if self._version is not None:
            self.model_info.remove(self._version)
        self.model_info.labels(version).set(1)
        self._version = version

    def render(self) -> bytes:
        return generate_latest(self.registry)
