"""``ccrec stream``: the embedded broker, replaying a data set, the worker."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path

import click

from ccrec.data.sequences import SequenceSpec
from streaming.broker import EmbeddedBroker, KafkaSettings, bootstrap
from streaming.events import (
    DEFAULT_PARTITIONS,
    DLQ_TOPIC,
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
@click.option("--topic", default=TOPIC, show_default=True)
@click.option("--bootstrap-servers", default=None, help=SERVERS_HELP)
def replay_cmd(
    dataset: str, rate: float, limit: int | None, topic: str, bootstrap_servers: str | None
) -> None:
    """Produce DATASET's events, in time order, as a click stream at RATE events/s.

    With no configured brokers an embedded broker runs only while this command
    does; start one with `ccrec stream broker` to keep the events.
    """
    with bootstrap(bootstrap_servers) as settings:
        ensure_topics(settings, topics=(topic, topic + ".dlq"))
        started = time.perf_counter()
        with EventProducer(settings, topic=topic) as producer:
            sent = replay(producer, dataset_events(dataset, limit), rate or None,
                          on_sent=lambda n: log.info("sent %d events", n))
        seconds = time.perf_counter() - started
        click.echo(json.dumps({"sent": sent, "seconds": round(seconds, 2),
                               "events_per_s": round(sent / max(seconds, 1e-9), 1)}))


DEFAULTS = dict(group_id="ccrec-features", batch_size=5000, max_poll_interval_ms=300_000,
                session_timeout_ms=10_000)  # as WorkerConfig (imported lazily: Feast is slow)


@stream.command("run")
@click.option("--dataset", required=True,
              help="Prepared data set (or model bundle) with vocab.json.")
@click.option("--online", type=click.Choice(["sqlite", "redis"]), default="sqlite",
              show_default=True)
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="The feature store's root directory (default: features/).")
@click.option("--project", default="ccrec", show_default=True)
@click.option("--redis-url", default=None, help="host:port (default $CCREC_REDIS_URL or local).")
@click.option("--group-id", default=DEFAULTS["group_id"], show_default=True)
@click.option("--batch-size", type=int, default=DEFAULTS["batch_size"], show_default=True)
@click.option("--max-poll-interval-ms", type=int, default=DEFAULTS["max_poll_interval_ms"],
              show_default=True)
@click.option("--session-timeout-ms", type=int, default=DEFAULTS["session_timeout_ms"],
              show_default=True)
@click.option("--max-past", type=int, default=SequenceSpec.max_past, show_default=True)
@click.option("--topic", default=TOPIC, show_default=True)
@click.option("--dlq-topic", default=DLQ_TOPIC, show_default=True)
@click.option("--bootstrap-servers", default=None, help=SERVERS_HELP)
@click.option("--crash-after-pushes", type=int, default=None, hidden=True)
def run_cmd(
    dataset: str, online: str, root: Path | None, project: str, redis_url: str | None,
    group_id: str,
    batch_size: int, max_poll_interval_ms: int, session_timeout_ms: int, max_past: int,
    topic: str, dlq_topic: str, bootstrap_servers: str | None, crash_after_pushes: int | None,
) -> None:
    """Consume click events, update user features in Feast, then commit (Ctrl-C stops)."""
    from features.store import FEATURES_DIR, open_store
    from streaming.worker import StreamWorker, WorkerConfig

    config = WorkerConfig(
        group_id=group_id, topic=topic, dlq_topic=dlq_topic, batch_size=batch_size,
        max_poll_interval_ms=max_poll_interval_ms,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=max(100, min(3000, session_timeout_ms // 3)),
        sequence=SequenceSpec(max_past=max_past), crash_after_pushes=crash_after_pushes,
    )
    vocab = Vocabulary.from_prepared(dataset)
    store = open_store(root or FEATURES_DIR, online, redis_url=redis_url, project=project)
    with bootstrap(bootstrap_servers) as settings:
        ensure_topics(settings, topics=(topic, dlq_topic))
        worker = StreamWorker(settings, store, vocab, config)

        def stop(signum, frame) -> None:
            worker._stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("stream worker consuming from %s (group %s) into %s",
                 settings.bootstrap_servers, group_id, online)
        worker.run()
        click.echo(json.dumps(worker.stats.as_dict()))


if __name__ == "__main__":  # `python -m streaming.cli run ...` (no other ccrec plugins load)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stream()
