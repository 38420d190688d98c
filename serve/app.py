"""The Serve application: ``serve run serve.app:app`` or ``serve run serve/serve_config.yaml``.

The bundle and the feature source come from ``user_config`` (see
``serve/serve_config.yaml``); :func:`build` binds a graph with them set, for
tests, the demo and the benchmark.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from serve.deployments import Ingress, Sampler, Scorer


def build(bundle: str | None = None, features: dict[str, Any] | None = None,
          batch: dict[str, Any] | None = None, replicas: int | None = None,
          kafka: str | None = None) -> Application:
    """The graph with ``bundle`` and ``features`` set in its user_config.

    Args:
        bundle: the model bundle directory both stages load.
        features: the Ingress's feature source (see :func:`serve.features.reader_from_config`).
        batch: ``max_batch_size`` / ``batch_wait_timeout_s`` for both stages.
        replicas: a fixed replica count for every deployment (no autoscaling).
        kafka: bootstrap servers for POST /v1/events (default $KAFKA_BOOTSTRAP_SERVERS).
    """
    stage_config = {"bundle": bundle, **(batch or {})}
    fixed = {"num_replicas": replicas, "autoscaling_config": None} if replicas else {}
    sampler = Sampler.options(user_config=stage_config, **fixed).bind()
    scorer = Scorer.options(user_config=stage_config, **fixed).bind()
    ingress_config = {"features": features or {"source": "feast"}, "kafka": kafka}
    ingress = Ingress.options(user_config=ingress_config, **fixed)
    return ingress.bind(sampler, scorer)


app = Ingress.bind(Sampler.bind(), Scorer.bind())
