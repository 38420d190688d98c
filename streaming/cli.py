"""``ccrec stream``: the embedded broker, replaying a data set, the worker."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import click

from features.cli import feast_options, open_from_options
from streaming.broker import EmbeddedBroker, KafkaSettings, bootstrap
from streaming.config import WorkerConfig
from streaming.events import (
    DEFAULT_PARTITIONS,
    TOPIC,
    EventProducer,
    Vocabulary,
    dataset_events,
    ensure_topics,
    replay,
)

log = logging.getLogger(__name__)

SERVERS_HELP = "Kafka bootstrap servers; default $KAFKA_BOOTSTRAP_SERVERS, else an embedded broker"


@click.group()
def stream() -> None:
    """Kafka click events → Feast features (broker, replay, worker)."""
    # The console shows the worker's lines; the clients' own INFO lines (connections,
    # group joins) only when something goes wrong.
    for name in ("kafka", "feast"):
        logging.getLogger(name).setLevel(logging.WARNING)


@stream.command("broker")
@click.option("--port", type=int, default=None, help="Port to listen on (default: a free one).")
@click.option("--partitions", type=int, default=DEFAULT_PARTITIONS, show_default=True)
def broker_cmd(port: int | None, partitions: int) -> None:
    """Run the embedded Tansu broker in the foreground (Ctrl-C stops it)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # stop it on exit
    with EmbeddedBroker(port) as broker:
        ensure_topics(KafkaSettings(broker.bootstrap_servers), partitions)
        click.echo(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
        sys.stdout.flush()
        try:
            while broker.process is not None and broker.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


@stream.command("replay")
@click.option("--dataset", required=True, help="A prepared data set's name or directory.")
@click.option("--rate", type=float, default=1000.0, show_default=True,
              help="Events per second (0 = as fast as possible).")
@click.option("--limit", type=int, default=None, help="Send at most this many events.")
@click.option("--users", type=int, default=None,
              help="Spread the events over this many user ids (a load with many users).")
@click.option("--topic", default=TOPIC, show_default=True)
@click.option("--bootstrap-servers", default=None, help=SERVERS_HELP)
def replay_cmd(
    dataset: str, rate: float, limit: int | None, users: int | None, topic: str,
    bootstrap_servers: str | None,
) -> None:
    """Produce DATASET's events, in time order, as a click stream at RATE events/s.

    With no configured brokers an embedded broker runs only while this command
    does; start one with `ccrec stream broker` to keep the events.
    """
    with bootstrap(bootstrap_servers) as settings:
        ensure_topics(settings, topics=(topic, topic + ".dlq"))
        started = time.perf_counter()
        with EventProducer(settings, topic=topic) as producer:
            sent = replay(producer, dataset_events(dataset, limit, users), rate or None,
                          on_sent=lambda n: log.info("sent %d events", n))
        seconds = time.perf_counter() - started
        click.echo(json.dumps({"sent": sent, "seconds": round(seconds, 2),
                               "events_per_s": round(sent / max(seconds, 1e-9), 1)}))


#: The worker's defaults, which the options below show and start from.
WORKER = WorkerConfig()


def worker_config(
    group_id: str, topic: str, dlq_topic: str, batch_size: int, max_poll_interval_ms: int,
    session_timeout_ms: int, max_past: int, crash_after_pushes: int | None,
) -> WorkerConfig:
    """The :class:`WorkerConfig` of `ccrec stream run`'s options (the rest: its defaults)."""
    return replace(
        WORKER, group_id=group_id, topic=topic, dlq_topic=dlq_topic, batch_size=batch_size,
        max_poll_interval_ms=max_poll_interval_ms, session_timeout_ms=session_timeout_ms,
        # Kafka's rule: heartbeats at most a third of the session timeout apart.
        heartbeat_interval_ms=min(WORKER.heartbeat_interval_ms, session_timeout_ms // 3),
        sequence=replace(WORKER.sequence, max_past=max_past),
        crash_after_pushes=crash_after_pushes,
    )


@stream.command("run")
@click.option("--dataset", required=True,
              help="Prepared data set (or model bundle) with vocab.json.")
@feast_options
@click.option("--group-id", default=WORKER.group_id, show_default=True)
@click.option("--topic", default=WORKER.topic, show_default=True)
@click.option("--dlq-topic", default=WORKER.dlq_topic, show_default=True)
@click.option("--batch-size", type=int, default=WORKER.batch_size, show_default=True)
@click.option("--max-poll-interval-ms", type=int, default=WORKER.max_poll_interval_ms,
              show_default=True)
@click.option("--session-timeout-ms", type=int, default=WORKER.session_timeout_ms,
              show_default=True)
@click.option("--max-past", type=int, default=WORKER.sequence.max_past, show_default=True)
@click.option("--bootstrap-servers", default=None, help=SERVERS_HELP)
@click.option("--health-port", type=int, default=None,
              help="Serve GET /healthz (the liveness probe; 503 when the worker loop is "
                   "stuck) and GET /metrics (Prometheus) on this port.")
@click.option("--crash-after-pushes", type=int, default=None, hidden=True)
def run_cmd(
    dataset: str, feast_env: str, root: Path, project: str | None, redis_url: str | None,
    group_id: str, topic: str, dlq_topic: str, batch_size: int, max_poll_interval_ms: int,
    session_timeout_ms: int, max_past: int, bootstrap_servers: str | None,
    health_port: int | None, crash_after_pushes: int | None,
) -> None:
    """Consume click events, update user features in Feast, then commit (Ctrl-C stops).

    DATASET is a prepared data set or a model bundle: its vocab.json gives the
    item and category codes.
    """
    from streaming.health import Liveness
    from streaming.worker import StreamWorker

    # Importing Feast shows every deprecation warning once; those of the Kafka client
    # and the standard library it calls are no news to the worker's operator.
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    config = worker_config(group_id, topic, dlq_topic, batch_size, max_poll_interval_ms,
                           session_timeout_ms, max_past, crash_after_pushes)
    try:
        vocab = Vocabulary.from_prepared(dataset)
    except (FileNotFoundError, ValueError) as exc:  # no vocab.json, or one without items
        raise click.ClickException(f"{dataset}: {exc}") from exc
    store = open_from_options(feast_env, root, project, redis_url)
    liveness = Liveness(config.liveness_timeout_s)
    with bootstrap(bootstrap_servers) as settings:
        ensure_topics(settings, topics=(topic, dlq_topic))
        worker = StreamWorker(settings, store, vocab, config, liveness)
        if health_port is not None:
            from streaming.metrics import worker_registry

            liveness.serve(health_port, registry=worker_registry(worker))

        def stop(signum, frame) -> None:
            worker.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("stream worker consuming from %s (group %s) into Feast %s",
                 settings.bootstrap_servers, group_id, feast_env)
        worker.run()
        liveness.close()
        click.echo(json.dumps(worker.stats.as_dict()))


@stream.command("accuracy")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="The feature store's root: the rows go to data/offline/online_accuracy "
                   "under it (default: features/).")
@click.option("--window", "window_s", type=float, default=3600.0, show_default=True,
              help="Seconds: a click is joined with an answer at most this much older.")
@click.option("--grace", "grace_s", type=float, default=2.0, show_default=True,
              help="Seconds a new category interaction waits for impressions in flight.")
@click.option("--group-id", default="ccrec-online-accuracy", show_default=True)
@click.option("--metrics-port", type=int, default=None,
              help="Serve the Prometheus metrics (online HR@1, HR@3, Precision@3 per model "
                   "version) on this port.")
@click.option("--bootstrap-servers", default=None, help=SERVERS_HELP)
def accuracy_cmd(root: Path | None, window_s: float, grace_s: float, group_id: str,
                 metrics_port: int | None, bootstrap_servers: str | None) -> None:
    """Join each user's next category interaction with the last answer served (Ctrl-C stops)."""
    from features.environments import FEATURES_DIR
    from streaming.online_accuracy import JoinConfig, OnlineAccuracy, log_dir

    out = log_dir(root or FEATURES_DIR)
    with bootstrap(bootstrap_servers) as settings:
        consumer = OnlineAccuracy(settings, out, JoinConfig(window_s=window_s, grace_s=grace_s),
                                  group_id=group_id)
        if metrics_port is not None:
            log.info("metrics at http://0.0.0.0:%d/metrics",
                     consumer.exporter.serve(metrics_port))
        signal.signal(signal.SIGTERM, lambda signum, frame: consumer.stop(0))
        signal.signal(signal.SIGINT, lambda signum, frame: consumer.stop(0))
        log.info("online accuracy: %s → %s", settings.bootstrap_servers, out)
        consumer.run()
        click.echo(json.dumps({"rows": consumer.rows_written, "skipped": consumer.skipped}))


if __name__ == "__main__":  # `python -m streaming.cli run ...` (no other ccrec plugins load)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stream()
