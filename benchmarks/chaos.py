"""Chaos benchmark: the stream worker SIGKILLed at random moments, with poison events mixed in.

A producer sends ``--events`` messages at ``--rate`` through the embedded
broker: ML-1M's events in time order spread over ``--users`` user ids, and
every ``--poison-every``-th message a poison one (the payloads that stopped the
stream, bad JSON, unknown ids, an oversized body, ...); until the last kill it
keeps at most ``--backlog`` events uncommitted, so that every kill finds work
in flight. Meanwhile the worker
(``python -m streaming.cli run``, its own process) is SIGKILLed ``--kills``
times, each a random 0–``--max-kill-delay`` seconds after it started to
commit, and started again. A last worker drains the topic. Then:

* ``lost`` / ``duplicated``: valid events missing from, or counted twice in,
  the users' stored state (each user's event ids and retained events);
* ``mismatched_users``: users whose online features (read through Feast)
  differ from a batch recompute (``past_sequences``) of all their valid events;
* ``dlq``: poison messages found in the DLQ with a reason (of ``poison`` sent);
* ``max_stall_s``: the longest time the committed offsets did not move while
  events were waiting.

Usage: ``python -m benchmarks.chaos [--events 20000] [--kills 6] [--online redis]``;
prints the JSON and writes it to ``--out`` (benchmarks/results/chaos.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pandas as pd

from ccrec.data.prepared import resolve
from ccrec.data.sequences import past_sequences
from features import definitions as d
from features.store import (
    batch_sequence_features,
    online_sequence_features,
    open_store,
    read_state,
)
from streaming.broker import bootstrap
from streaming.config import WorkerConfig
from streaming.events import EventProducer, dataset_events, ensure_topics
from streaming.state import UserState

log = logging.getLogger("benchmarks.chaos")
RESULTS = Path(__file__).resolve().parent / "results" / "chaos.json"
GROUP = dict(max_poll_interval_ms=4000, session_timeout_ms=4000)

#: Poison payloads, sent in turn (the first four stopped the stream before).
POISON = [
    b'{"user_id": "p", "item_id": "1", "category_id": "Drama", '
    b'"timestamp": "1500-01-01T00:00:00Z"}',
    b'{"user_id": "p", "item_id": "1", "category_id": "Drama", '
    b'"timestamp": "9999-12-31T23:59:59-23:59"}',
    b'{"user_id": "p", "item_id": "1", "category_id": "Drama", '
    b'"timestamp": "0001-01-01T00:00:00+01:00"}',
    b'{"user_id": "\\ud800", "item_id": "1", "category_id": "Drama", '
    b'"timestamp": "2000-01-01T00:00:00Z"}',
    b"{not json",
    b'{"user_id": "p", "item_id": "no-such-item", "category_id": "Drama", "timestamp": 1}',
    b'{"user_id": "p", "item_id": "1", "category_id": "Drama", "timestamp": 978300760, '
    b'"event_type": "teleport"}',
    b'{"user_id": "' + b"x" * 70_000 + b'"}',
]


class Producer(threading.Thread):
    """Sends the events at a rate, a poison message every ``poison_every``, never more than
    ``limit`` in all (the main thread moves it with the worker's progress, so that events
    remain for every kill); records where each poison message went."""

    def __init__(self, settings, topic: str, events: list[dict], rate: float,
                 poison_every: int) -> None:
        super().__init__(name="chaos-producer", daemon=True)
        self.settings, self.topic, self.events = settings, topic, events
        self.rate, self.poison_every = rate, poison_every
        self.sent = 0
        self.limit = len(events)
        self.poison: list[tuple[int, int]] = []  # (partition, offset)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with EventProducer(self.settings, topic=self.topic) as producer:
                futures, started, paced = [], time.perf_counter(), 0
                for k, event in enumerate(self.events):
                    if k >= self.limit:
                        while k >= self.limit:
                            time.sleep(0.01)
                        started, paced = time.perf_counter(), 0  # the rate, not a burst
                    if (k + 1) % self.poison_every == 0:
                        value = POISON[len(futures) % len(POISON)]
                        futures.append(producer.send_raw(value, key=b"poison"))
                    else:
                        producer.send(event)
                    self.sent, paced = k + 1, paced + 1
                    ahead = paced / self.rate - (time.perf_counter() - started)
                    if ahead > 0.002:
                        time.sleep(ahead)
                producer.flush()
                self.poison = [(m.partition, m.offset)
                               for m in (f.get(timeout=30) for f in futures)]
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


def committed_total(consumer, topic: str) -> int:
    from kafka.structs import TopicPartition

    total = 0
    for partition in consumer.partitions_for_topic(topic) or ():
        offset = consumer.committed(TopicPartition(topic, partition))
        total += offset if offset and offset > 0 else 0
    return total


class Worker:
    """One life of the worker process."""

    def __init__(self, args, settings, topics: dict, root: Path, project: str, logs: Path,
                 life: int) -> None:
        command = [sys.executable, "-m", "streaming.cli", "run", "--dataset", args.dataset,
                   "--feast-env", args.online, "--root", str(root), "--project", project,
                   "--bootstrap-servers", settings.bootstrap_servers,
                   "--topic", topics["topic"], "--dlq-topic", topics["dlq"],
                   "--group-id", topics["group"], "--batch-size", str(args.batch_size),
                   "--max-poll-interval-ms", str(GROUP["max_poll_interval_ms"]),
                   "--session-timeout-ms", str(GROUP["session_timeout_ms"])]
        self.log = logs / f"worker-{life}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


def batch_features(events: list[dict], vocab: dict, spec) -> dict[str, dict]:
    """user id → the batch recompute of its features (as training computes them)."""
    items = {v: i for i, v in enumerate(vocab["items"])}
    cats = {v: i for i, v in enumerate(vocab["categories"])}
    names = sorted({e["user_id"] for e in events})
    code = {u: i for i, u in enumerate(names)}
    frame = pd.DataFrame({
        "user": [code[e["user_id"]] for e in events],
        "item": [items[e["item_id"]] for e in events],
        "category": [cats[e["category_id"]] for e in events],
        "timestamp": [int(pd.Timestamp(e["timestamp"]).timestamp()) for e in events],
    })
    return batch_sequence_features(past_sequences(frame, spec), names)


def dlq_sources(settings, topic: str) -> dict[tuple[int, int], str]:
    """(partition, offset) of each DLQ message's source record → its reason."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, **settings.config(), auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, enable_auto_commit=False)
    found = {}
    for message in consumer:
        body = json.loads(message.value)
        found[(body["source"]["partition"], body["source"]["offset"])] = body["reason"]
    consumer.close()
    return found


def run(args) -> dict:
    rng = random.Random(args.seed)
    dataset = resolve(args.dataset)
    vocab = json.loads((dataset / "vocab.json").read_text())
    events = list(dataset_events(dataset, args.events, args.users))
    valid = [e for k, e in enumerate(events) if (k + 1) % args.poison_every != 0]
    name = f"ccrec.chaos.{uuid.uuid4().hex[:8]}"
    topics = {"topic": name, "dlq": name + ".dlq", "group": f"chaos-{name}"}
    project = f"chaos_{uuid.uuid4().hex[:8]}"
    from kafka import KafkaConsumer

    with bootstrap() as settings, tempfile.TemporaryDirectory() as tmp:
        root, logs = Path(tmp) / "store", Path(tmp)
        ensure_topics(settings, topics=(topics["topic"], topics["dlq"]))
        store = open_store(root, args.online, project=project)
        watcher = KafkaConsumer(**settings.config(), group_id=topics["group"],
                                enable_auto_commit=False)
        producer = Producer(settings, topics["topic"], events, args.rate, args.poison_every)
        kills, stall, last_total, last_move = 0, 0.0, 0, time.monotonic()

        def progress() -> int:
            """The committed total; tracks the longest stall while events wait."""
            nonlocal stall, last_total, last_move
            total = committed_total(watcher, topics["topic"])
            if kills < args.kills:  # keep events coming for the kills still to come
                producer.limit = total + args.backlog
            now = time.monotonic()
            if total > last_total or total >= producer.sent:
                last_total, last_move = total, now
            stall = max(stall, now - last_move)
            return total

        try:
            producer.start()
            worker = Worker(args, settings, topics, root, project, logs, 0)
            while kills < args.kills:
                started = progress()
                deadline = time.monotonic() + 120
                while progress() <= started and time.monotonic() < deadline:
                    time.sleep(0.1)  # until this life commits
                end = time.monotonic() + rng.uniform(0, args.max_kill_delay)
                while time.monotonic() < end:
                    progress()
                    time.sleep(0.05)
                worker.kill()
                kills += 1
                log.info("kill %d at %d committed of %d sent", kills, last_total, producer.sent)
                worker = Worker(args, settings, topics, root, project, logs, kills)
            producer.limit = len(events)
            producer.join()
            if producer.error is not None:
                raise producer.error
            deadline = time.monotonic() + 600
            while progress() < len(events) and time.monotonic() < deadline:
                if worker.process.poll() is not None:
                    raise RuntimeError(f"the worker exited: {worker.log.read_text()[-2000:]}")
                time.sleep(0.1)
            worker.process.send_signal(signal.SIGTERM)
            worker.process.wait(60)
            users = sorted({e["user_id"] for e in valid})
            state = read_state(store, users)
            online = online_sequence_features(store, users)
            want = batch_features(valid, vocab, WorkerConfig().sequence)
            expected: dict[str, list[str]] = {}
            for e in valid:
                expected.setdefault(e["user_id"], []).append(e["event_id"])
            lost = duplicated = 0
            for i, user in enumerate(users):
                raw = state[d.WORKER_STATE][i]
                stored = UserState.from_bytes(raw) if raw else None
                ids = stored.event_ids if stored else []
                lost += len(set(expected[user]) - set(ids))
                duplicated += len(ids) - len(set(ids))
                if stored is not None:
                    duplicated += max(0, len(stored.items) - len(expected[user]))
            in_dlq = dlq_sources(settings, topics["dlq"])
            result = {
                "events": len(events), "kills": kills, "lost": lost, "duplicated": duplicated,
                "poison": len(producer.poison),
                "dlq": sum(1 for p in producer.poison if in_dlq.get(p)),
                "mismatched_users": sum(online[u] != want[u] for u in users),
                "max_stall_s": round(stall, 2),
            }
        finally:
            watcher.close(autocommit=False)
            if worker.process.poll() is None:
                worker.kill()
            store.teardown()
    log.info("load average %.1f on %d cores", os.getloadavg()[0], os.cpu_count())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=250.0, help="events/s produced")
    parser.add_argument("--poison-every", type=int, default=500)
    parser.add_argument("--backlog", type=int, default=1500,
                        help="until the last kill, at most this many events wait uncommitted")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--max-kill-delay", type=float, default=3.0,
                        help="a kill comes 0..this many s after a life starts committing")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--online", default="redis", choices=["sqlite", "redis"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    logging.getLogger("feast").setLevel(logging.WARNING)
    result = run(args)
    print(json.dumps(result))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
