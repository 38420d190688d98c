"""Online accuracy: each user's next category interaction against the last answer served.

:class:`OnlineJoin` is the join, pure logic (no clients, no clock):

* A click opens a new category interaction (CI) by the rule of
  :mod:`ccrec.data.sequences`: the user has no CI of that category whose first
  event lies within ``ci_window_s`` (event time) before it. Clicks that continue
  a CI are not scored: the paper's replay scores the top k against the *next* CI.
* A new CI is joined with the last impression served to that user before the
  click arrived (both in arrival time: an impression's ``time``, a click's
  Kafka record time), if that impression is at most ``window_s`` older than the
  click. Each impression is scored once: a second CI without a new answer in
  between is not scored.
* Impressions travel on their own topic and may arrive a little after a click
  that followed them, so a new CI waits ``grace_s`` before it is joined.

Each joined CI is one :data:`ROW_COLUMNS` row: the truth is the CI's category,
hit@1 / hit@3 whether it is in the top 1 / 3, ``shown`` how many categories
the answer had. Online HR@k = share of rows with hit@k; Precision@3 =
Σ hit@3 / Σ min(3, shown) (micro-averaged, as offline).

:class:`OnlineAccuracy` consumes ``ccrec.recommendations`` and
``ccrec.interactions`` with its own consumer group, runs the join, exports
Prometheus metrics per model version and appends the rows to a parquet log
beside the feature store's offline logs (``ccrec report online`` reads it).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ccrec.online import LOG_SUBDIR, ROW_COLUMNS
from ccrec.schema import parse_event
from streaming.broker import KafkaSettings
from streaming.events import TOPIC
from streaming.impressions import IMPRESSIONS_TOPIC, Impression

log = logging.getLogger(__name__)

DAY = 86_400
#: How many of a user's recent impressions the join keeps.
IMPRESSIONS_PER_USER = 8


@dataclass(frozen=True)
class Click:
    """A click as the join sees it: event time (CIs) and arrival time (the join)."""

    user_id: str
    category_id: str
    timestamp: float
    arrival: float


@dataclass(frozen=True)
class JoinConfig:
    """Args:
        window_s: an impression older than this before the click is not joined.
        ci_window_s: the CI grouping window (as in training: 5 days).
        grace_s: a new CI waits this long for impressions still on their way.
        max_users: users whose state is kept (least recently seen dropped first).
    """

    window_s: float = 3600.0
    ci_window_s: float = 5 * DAY
    grace_s: float = 2.0
    max_users: int = 100_000


class _User:
    __slots__ = ("ci_starts", "impressions", "scored")

    def __init__(self) -> None:
        self.ci_starts: dict[str, float] = {}  # category → start of its latest CI
        self.impressions: deque[Impression] = deque(maxlen=IMPRESSIONS_PER_USER)
        self.scored: set[str] = set()  # request ids already joined


class OnlineJoin:
    """Joins new CIs with the impression served before them (see the module docstring)."""

    def __init__(self, config: JoinConfig | None = None) -> None:
        self.config = config or JoinConfig()
        self.users: OrderedDict[str, _User] = OrderedDict()
        # new CIs waiting for the grace, each with the last impression before it seen so
        # far (later answers to a polling client may push it out of the user's recent ones)
        self.pending: deque[list] = deque()  # [click, seen], oldest arrival first
        self.waiting: dict[str, deque[list]] = {}  # the same entries by user

    def _user(self, user_id: str) -> _User:
        user = self.users.get(user_id)
        if user is None:
            user = self.users[user_id] = _User()
            if len(self.users) > self.config.max_users:
                self.users.popitem(last=False)
        self.users.move_to_end(user_id)
        return user

    def impression(self, impression: Impression) -> None:
        for entry in self.waiting.get(impression.user_id, ()):  # a late one for a new CI
            click, seen = entry
            if impression.time <= click.arrival and (seen is None or impression.time > seen.time):
                entry[1] = impression
        user = self._user(impression.user_id)
        user.impressions.append(impression)
        if len(user.impressions) > 1 and user.impressions[-2].time > impression.time:
            user.impressions = deque(sorted(user.impressions, key=lambda i: i.time),
                                     maxlen=IMPRESSIONS_PER_USER)

    def click(self, click: Click) -> bool:
        """Record a click; True when it opens a new CI (then it waits to be joined)."""
        user = self._user(click.user_id)
        start = user.ci_starts.get(click.category_id)
        if start is not None and 0 <= click.timestamp - start <= self.config.ci_window_s:
            return False
        user.ci_starts[click.category_id] = click.timestamp
        horizon = click.timestamp - self.config.ci_window_s
        for category in [c for c, t in user.ci_starts.items() if t < horizon]:
            del user.ci_starts[category]
        entry = [click, _last_before(user.impressions, click.arrival)]
        self.pending.append(entry)
        self.waiting.setdefault(click.user_id, deque()).append(entry)
        return True

    def due(self, now: float) -> list[dict]:
        """Join the new CIs that arrived at least ``grace_s`` before ``now``: their rows."""
        rows = []
        while self.pending and self.pending[0][0].arrival <= now - self.config.grace_s:
            click, seen = self.pending.popleft()
            waiting = self.waiting[click.user_id]
            waiting.popleft()  # one user's entries are in arrival order too
            if not waiting:
                del self.waiting[click.user_id]
            row = self._join(click, seen)
            if row is not None:
                rows.append(row)
        return rows

    def _join(self, click: Click, seen: Impression | None) -> dict | None:
        user = self.users.get(click.user_id)
        if user is None:
            return None
        candidates = [i for i in (seen, _last_before(user.impressions, click.arrival)) if i]
        if not candidates:
            return None
        last = max(candidates, key=lambda i: i.time)
        if last.request_id in user.scored or click.arrival - last.time > self.config.window_s:
            return None
        user.scored.add(last.request_id)
        if len(user.scored) > 4 * IMPRESSIONS_PER_USER:
            user.scored = {i.request_id for i in user.impressions} & user.scored
        top = last.categories
        return {
            "time": pd.Timestamp(click.arrival, unit="s", tz="UTC"),
            "user_id": click.user_id, "model_version": last.model_version,
            "request_id": last.request_id,
            "impression_time": pd.Timestamp(last.time, unit="s", tz="UTC"),
            "category_id": click.category_id,
            "rank": top.index(click.category_id) + 1 if click.category_id in top else 0,
            "shown": len(top), "hit_at_1": click.category_id in top[:1],
            "hit_at_3": click.category_id in top[:3], "fallback": last.fallback,
        }


def _last_before(impressions: deque[Impression], arrival: float) -> Impression | None:
    """The latest of time-ordered ``impressions`` served at or before ``arrival``."""
    for impression in reversed(impressions):
        if impression.time <= arrival:
            return impression
    return None


class Exporter:
    """Prometheus metrics of the joined rows, per model version (own registry).

    Counters ``ccrec_online_points_total``, ``ccrec_online_hits_total{k}`` and
    ``ccrec_online_predicted_total{k}`` (HR and precision follow in PromQL), and the
    running values as the gauge ``ccrec_online_accuracy{metric}``.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = r = CollectorRegistry()
        self.points = Counter("ccrec_online_points_total",
                              "New category interactions joined with an impression.",
                              ["model_version"], registry=r)
        self.hits = Counter("ccrec_online_hits_total", "Joined CIs whose category was in the "
                            "top k served.", ["model_version", "k"], registry=r)
        self.predicted = Counter("ccrec_online_predicted_total", "Categories shown in the top "
                                 "k of joined impressions.", ["model_version", "k"], registry=r)
        self.accuracy = Gauge("ccrec_online_accuracy", "Running online HR@1, HR@3, "
                              "Precision@3 per model version.", ["model_version", "metric"],
                              registry=r)
        self.totals: dict[str, list[float]] = {}  # version → points, hit@1, hit@3, shown@3

    def add(self, rows: list[dict]) -> None:
        for row in rows:
            version = row["model_version"]
            t = self.totals.setdefault(version, [0.0, 0.0, 0.0, 0.0])
            shown3 = min(3, row["shown"])
            for i, value in enumerate((1, row["hit_at_1"], row["hit_at_3"], shown3)):
                t[i] += value
            self.points.labels(version).inc()
            self.hits.labels(version, "1").inc(int(row["hit_at_1"]))
            self.hits.labels(version, "3").inc(int(row["hit_at_3"]))
            self.predicted.labels(version, "1").inc(min(1, row["shown"]))
            self.predicted.labels(version, "3").inc(shown3)
        for version, (n, h1, h3, s3) in self.totals.items():
            self.accuracy.labels(version, "HR@1").set(h1 / n)
            self.accuracy.labels(version, "HR@3").set(h3 / n)
            self.accuracy.labels(version, "Precision@3").set(h3 / s3 if s3 else 0.0)

    def serve(self, port: int) -> int:
        """/metrics on ``port`` (0: a free one) from a daemon thread; returns the port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, registry=self.registry)
        return server.server_address[1]


def write_rows(directory: Path, rows: list[dict]) -> Path | None:
    """Append rows to the parquet log in ``directory`` (one part per call, atomic)."""
    if not rows:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
    staging = path.with_suffix(".tmp")
    pd.DataFrame(rows, columns=list(ROW_COLUMNS)).to_parquet(staging, index=False)
    staging.replace(path)
    return path


def log_dir(feature_root: Path) -> Path:
    """The online accuracy log beside the feature store's offline logs."""
    return Path(feature_root) / LOG_SUBDIR


class OnlineAccuracy(threading.Thread):
    """The consumer: impressions and clicks → :class:`OnlineJoin` → metrics and log rows.

    A daemon thread (:meth:`start`, :meth:`stop`), or :meth:`run` in the caller's.

    Args:
        settings: where the brokers are.
        out_dir: the parquet log directory (see :func:`log_dir`).
        config: the join's windows.
        group_id: its consumer group (its own: it reads the clicks the worker reads).
        topics: (impressions, clicks).
        consumer: extra KafkaConsumer settings (tests set the group timing low). It
            starts at the latest offsets: it measures from when it first runs.
    """

    def __init__(self, settings: KafkaSettings, out_dir: Path, config: JoinConfig | None = None,
                 group_id: str = "ccrec-online-accuracy",
                 topics: tuple[str, str] = (IMPRESSIONS_TOPIC, TOPIC), **consumer) -> None:
        super().__init__(name="ccrec-online-accuracy", daemon=True)
        self.settings, self.out_dir, self.group_id = settings, Path(out_dir), group_id
        self.impressions_topic, self.clicks_topic = topics
        self.online_join = OnlineJoin(config)
        self.exporter = Exporter()
        self.consumer_options = consumer
        self.rows_written = 0
        self.skipped = 0  # messages that were neither an impression nor a click
        self.stopping = threading.Event()
        #: Set once the group has given the consumer its partitions: from then on it reads
        #: impressions and clicks as they arrive (before, it catches up on them later).
        self.assigned = threading.Event()

    def _consumer(self):
        from kafka import KafkaConsumer

        from streaming.events import ensure_topics

        ensure_topics(self.settings, topics=(self.impressions_topic, self.clicks_topic))
        options = {"auto_offset_reset": "latest", "enable_auto_commit": True,
                   **self.consumer_options}
        consumer = KafkaConsumer(**self.settings.config(), group_id=self.group_id, **options)
        consumer.subscribe([self.impressions_topic, self.clicks_topic])
        return consumer

    def handle(self, records) -> None:
        """Feed polled records (any order) to the join, oldest arrival first."""
        for record in sorted(records, key=lambda r: r.timestamp):
            try:
                if record.topic == self.impressions_topic:
                    self.online_join.impression(Impression.from_wire(record.value))
                else:
                    event = parse_event(record.value)
                    self.online_join.click(Click(event.user_id, event.category_id,
                                          float(event.epoch_seconds), record.timestamp / 1000))
            except Exception as exc:  # a bad message is the worker's DLQ's business, not ours
                self.skipped += 1
                log.debug("online accuracy: skipped a message of %s: %s", record.topic, exc)

    def flush(self, now: float | None = None) -> list[dict]:
        """Join what is due, export and write it; the rows."""
        rows = self.online_join.due(time.time() if now is None else now)
        if rows:
            self.exporter.add(rows)
            write_rows(self.out_dir, rows)
            self.rows_written += len(rows)
        return rows

    def run(self, poll_ms: int = 200) -> None:
        """Consume until :meth:`stop`."""
        consumer = self._consumer()
        try:
            while True:
                stopping = self.stopping.is_set()  # one more poll after stop(): the last clicks
                polled = consumer.poll(timeout_ms=poll_ms)
                if not self.assigned.is_set() and consumer.assignment():
                    self.assigned.set()
                self.handle([r for batch in polled.values() for r in batch])
                self.flush()
                if stopping:
                    break
        finally:
            consumer.close()
            self.flush(float("inf"))

    def stop(self, timeout: float = 30.0) -> None:
        self.stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
