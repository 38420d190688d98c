"""Streaming benchmark: sustained worker throughput and feature freshness, as JSON.

* ``sqlite`` / ``redis``: ``events_per_s`` of one worker applying ML-1M's events
  (time order, pre-produced to the topic) into that online store, from its
  first batch to its last commit (validation, state, ``past_sequences``, the
  offline parquet log and the online write included). ML-1M in time order
  touches few users (about 520 in the first 60,000 events). On a shared
  machine the wall-clock rate follows the load; ``cpu_events_per_s`` (events
  per CPU second of the worker's batch step, validate → commit) and
  ``process_cpu_events_per_s`` (per CPU second of the whole process, the Kafka
  client's fetching and decoding included) follow the code.
* ``high_cardinality``: the same, ``sqlite`` and ``redis``, with the same events
  spread over ``--users`` (50,000) distinct user ids, so that almost every
  event reads, recomputes and writes another user; ``distinct_users`` counts them.
* ``freshness_ms``: after 500 warm-up events, a separate process replays the
  many-user events at 1,000 events/s; for every event, the time from the
  producer's send (the Kafka record timestamp) to the end of the online write
  that made it readable (Redis online store).

Usage: ``python -m benchmarks.stream [--events 60000] [--users 50000]
[--freshness-events 15000]``. Uses ``$KAFKA_BOOTSTRAP_SERVERS`` when set, else
an embedded Tansu broker.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from ccrec.data.prepared import resolve
from features.store import open_store
from streaming.broker import bootstrap
from streaming.config import WorkerConfig
from streaming.events import EventProducer, Vocabulary, dataset_events, ensure_topics, replay
from streaming.worker import StreamWorker

log = logging.getLogger("benchmarks.stream")
#: Events through the worker before the freshness clock starts.
WARM_UP = 500


def _dataset(name: str) -> Path:
    if not (resolve(name) / "vocab.json").exists():
        from ccrec.data.prepare import prepare

        prepare(name)
    return resolve(name)


def _topic(settings) -> dict:
    name = f"ccrec.bench.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, topics=(name, name + ".dlq"))
    return {"topic": name, "dlq_topic": name + ".dlq", "group_id": f"bench-{name}"}


def _wait(worker: StreamWorker, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while worker.stats.consumed < total and time.monotonic() < deadline:
        if worker.error is not None:
            raise RuntimeError("the worker failed") from worker.error
        time.sleep(0.05)


def throughput(settings, dataset: Path, online: str, events: int, batch_size: int,
               users: int | None = None) -> dict:
    """One worker's sustained rate over ``events`` pre-produced events (``users``: spread
    over that many user ids)."""
    topics = _topic(settings)
    distinct = set()
    with EventProducer(settings, topic=topics["topic"]) as producer:
        for event in dataset_events(dataset, events, users):
            distinct.add(event["user_id"])
            producer.send(event)
        producer.flush()
    with tempfile.TemporaryDirectory() as root:
        store = open_store(root, online, project=f"bench_{uuid.uuid4().hex[:8]}")
        try:
            worker = StreamWorker(settings, store, Vocabulary.from_prepared(dataset),
                                  WorkerConfig(**topics, batch_size=batch_size)).start()
            cpu = time.process_time()
            _wait(worker, events, 600)
            cpu = time.process_time() - cpu  # the whole process: Kafka client threads too
            worker.stop()
        finally:
            store.teardown()
    stats = worker.stats
    costs = np.asarray(stats.batch_costs, dtype=float)
    seconds = stats.last_batch_at - stats.first_batch_at
    log.info("%s: %s in %.1fs", online, stats.as_dict(), seconds)
    return {"events_per_s": round(stats.consumed / seconds, 1), "events": stats.consumed,
            "seconds": round(seconds, 2), "batches": stats.batches,
            "users_pushed": stats.users_pushed,
            "cpu_events_per_s": round(float(costs[:, 0].sum() / costs[:, 1].sum() * 1000), 1),
            "process_cpu_events_per_s": round(stats.consumed / cpu, 1),
            **({"distinct_users": len(distinct)} if users else {})}


def freshness(settings, dataset: Path, online: str, events: int, rate: float,
              users: int) -> dict:
    topics = _topic(settings)
    with tempfile.TemporaryDirectory() as root:
        store = open_store(root, online, project=f"bench_{uuid.uuid4().hex[:8]}")
        try:
            worker = StreamWorker(settings, store, Vocabulary.from_prepared(dataset),
                                  WorkerConfig(**topics, batch_size=2000,
                                               poll_timeout_ms=20)).start()
            while not worker.assignment:  # the group join, before the clock starts
                time.sleep(0.05)
            # Warm-up (not measured): the first batches open the store's and the
            # broker's connections and look up the topic id.
            with EventProducer(settings, topic=topics["topic"]) as warm_up:
                replay(warm_up, dataset_events(dataset, WARM_UP))
            _wait(worker, WARM_UP, 120)
            worker.stats.freshness_ms.clear()
            worker.stats.batch_costs.clear()
            consumed = worker.stats.consumed
            producer = subprocess.run(
                [sys.executable, "-m", "streaming.cli", "replay", "--dataset", str(dataset),
                 "--rate", str(rate), "--limit", str(events), "--users", str(users),
                 "--topic", topics["topic"],
                 "--bootstrap-servers", settings.bootstrap_servers],
                capture_output=True, text=True, timeout=600, check=True,
            )
            sent = json.loads(producer.stdout.strip().splitlines()[-1])
            _wait(worker, consumed + events, 120)
            worker.stop()
        finally:
            store.teardown()
    latencies = np.asarray(worker.stats.freshness_ms)
    costs = np.asarray(worker.stats.batch_costs, dtype=float)
    return {"p50": round(float(np.percentile(latencies, 50)), 1),
            "p99": round(float(np.percentile(latencies, 99)), 1),
            "max": round(float(latencies.max()), 1), "online": online,
            "rate_events_per_s": sent["events_per_s"], "events": int(latencies.size),
            "distinct_users": min(users, events),
            "batches": len(costs), "mean_batch": round(float(costs[:, 0].mean()), 1),
            "batch_cpu_ms_p50": round(float(np.percentile(costs[:, 1], 50)), 1),
            "batch_wall_ms_p50": round(float(np.percentile(costs[:, 2], 50)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--users", type=int, default=50_000,
                        help="distinct users of the high-cardinality runs and of freshness")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--freshness-events", type=int, default=15_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--freshness-online", default="redis", choices=["sqlite", "redis"])
    parser.add_argument("--only-freshness", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("feast").setLevel(logging.WARNING)
    dataset = _dataset(args.dataset)
    if args.only_freshness:
        logging.getLogger("streaming.worker").setLevel(logging.DEBUG)
        with bootstrap() as settings:
            print(json.dumps(freshness(settings, dataset, args.freshness_online,
                                       args.freshness_events, args.rate, args.users)))
        return
    with bootstrap() as settings:
        result = {
            "sqlite": throughput(settings, dataset, "sqlite", args.events, args.batch_size),
            "redis": throughput(settings, dataset, "redis", args.events, args.batch_size),
            "high_cardinality": {
                online: throughput(settings, dataset, online, args.events, args.batch_size,
                                   args.users)
                for online in ("sqlite", "redis")},
            "freshness_ms": freshness(settings, dataset, args.freshness_online,
                                      args.freshness_events, args.rate, args.users),
        }
    result["goals"] = {"events_per_s": 5000,
                       "high_cardinality_events_per_s": {"sqlite": 5000, "redis": 10_000},
                       "freshness_p99_ms": 100}
    result["load_average_1m"] = round(__import__("os").getloadavg()[0], 1)
    result["cpu_cores"] = __import__("os").cpu_count()
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
