"""The stream worker starts from exactly the command line that compose and Kubernetes run.

The command comes from deploy/compose/compose.yaml and
deploy/k8s/41-stream-worker.yaml (the two must agree) and runs as a process
with the deploy's environment: a model bundle at ``/data/bundles/current`` (a
symlink to a version, as a rollout leaves it), the production Feast
environment (SQL registry on the real PostgreSQL, Redis online store) and a
Kafka broker. Two values are the host's own: the volume mount ``/data``
becomes a temporary directory, and the health port a free one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
import redis
import yaml
from stream_helpers import batch_features, make_events, online_features, wait_for

from ccrec.data.prepared import load_prepared
from ccrec.data.sequences import SequenceSpec
from ccrec.data.synthetic import write_synthetic
from streaming.broker import EmbeddedBroker, KafkaSettings, free_port
from streaming.config import WorkerConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def deploy_command() -> list[str]:
    """The worker's command line; compose and Kubernetes run the same one."""
    compose = yaml.safe_load((REPO / "deploy" / "compose" / "compose.yaml").read_text())
    documents = yaml.safe_load_all((REPO / "deploy" / "k8s" / "41-stream-worker.yaml").read_text())
    (deployment,) = [doc for doc in documents if doc["kind"] == "Deployment"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert compose["services"]["stream"]["command"] == command
    return command


def save_bundle_of(prepared, root: Path) -> Path:
    """A real bundle (random weights, the debug configuration) of ``prepared``'s vocabulary."""
    import torch

    from ccrec.bundle import save_bundle
    from ccrec.config import load
    from ccrec.models.cascade import CascadeConfig, CCRec
    from ccrec.models.encoder import CategoryVAE
    from ccrec.models.sampler import MLESampler
    from ccrec.models.scorer import PrecisionScorer

    config = load(CascadeConfig, REPO / "ccrec" / "configs" / "debug.yaml", [])
    categories = prepared.num_categories
    torch.manual_seed(0)
    model = CCRec(MLESampler(categories, config.max_past, config.sampler),
                  CategoryVAE(prepared.feature_cardinalities, categories, config.encoder),
                  PrecisionScorer(categories, config.encoder.latent_dim, config.scorer),
                  config.candidates)
    return save_bundle(model, config, prepared.vocab, root, dataset="synthetic", version="v1")


@pytest.fixture
def production(monkeypatch):
    """The production environment's variables, on a fresh PostgreSQL schema and Feast project."""
    suffix = uuid.uuid4().hex[:10]
    project, schema = f"ccrec_stream_deploy_{suffix}", f"ccrec_stream_deploy_{suffix}"
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    env = {"FEAST_PROJECT": project,
           "FEAST_REGISTRY_URL": "postgresql+psycopg://postgres@127.0.0.1:5432/test"
                                 f"?options=-csearch_path%3D{schema}",
           "CCREC_REDIS_URL": "127.0.0.1:6379,db=0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield env
    finally:
        client = redis.Redis("127.0.0.1", 6379)
        for key in client.scan_iter(match=b"*" + project.encode()):
            client.delete(key)
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status, json.loads(response.read())
    except OSError:
        return 0, {}


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return response.read().decode()


def test_the_deploy_command_line_runs_the_worker(tmp_path, production) -> None:
    from features.store import open_store
    from streaming.events import EventProducer

    command = deploy_command()
    data = tmp_path / "data"
    prepared = load_prepared(write_synthetic(tmp_path / "synthetic"))
    bundle = save_bundle_of(prepared, data / "bundles")
    (data / "bundles" / "current").symlink_to(bundle.name)  # a rollout re-points it
    port = free_port()
    args = [str(data) + arg[len("/data"):] if arg.startswith("/data/") else arg
            for arg in command]
    args[args.index("--health-port") + 1] = str(port)
    args[0] = str(Path(sys.executable).parent / "ccrec")
    # The synthetic vocabulary: items i1..i30, categories c1..c6 (codes = their numbers).
    events = make_events(300, 40, seed=31, items=prepared.num_items)
    log = tmp_path / "worker.log"
    with EmbeddedBroker() as broker, open(log, "wb") as out:
        env = {**os.environ, **production, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
        worker = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=out)
        try:
            wait_for(lambda: _healthz(port)[0] == 200 or worker.poll() is not None, 180,
                     "the worker's liveness endpoint")
            assert worker.poll() is None, log.read_text()[-3000:]
            with EventProducer(KafkaSettings(broker.bootstrap_servers)) as producer:
                for event in events:
                    producer.send(event)
                producer.flush()
            store = open_store(data / "feast", "production", apply=False)
            spec = SequenceSpec(max_past=WorkerConfig().sequence.max_past)
            want = batch_features(events, spec)
            wait_for(lambda: online_features(store, list(want)) == want, 120,
                     "the deployed worker's features in Redis")
            status, body = _healthz(port)
            assert status == 200 and body["alive"] and body["last_beat_s"] < 5
            applied = f'ccrec_stream_records_total{{outcome="applied"}} {float(len(events))}'
            wait_for(lambda: applied in _metrics(port), 30, "the worker's metrics")
            worker.send_signal(signal.SIGTERM)
            stdout, _ = worker.communicate(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert worker.returncode == 0, log.read_text()[-3000:]
    stats = json.loads(stdout.decode().strip().splitlines()[-1])
    assert (stats["applied"], stats["dlq_total"]) == (len(events), 0)
    # The bundle carries the item vocabulary the worker coded the events with, and the
    # offline log went to the volume.
    assert json.loads((bundle / "vocab.json").read_text())["items"] == prepared.vocab["items"]
    parts = list((data / "feast" / "data" / "offline" / "user_category_sequence").glob("*"))
    assert sum(pq.read_metadata(p).num_rows for p in parts) >= len(want)
