"""POST /v1/events → Kafka: a small async wrapper around a kafka-python producer."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from ccrec.schema import Event
from streaming.events import TOPIC, encode


class StreamUnavailable(RuntimeError):
    """No Kafka bootstrap servers are configured, or the broker does not answer."""


class EventPublisher:
    """Produce validated events, keyed by user (one partition keeps a user's order).

    Args:
        bootstrap_servers: ``host:port[,…]``; default ``$KAFKA_BOOTSTRAP_SERVERS``.
        topic: the interactions topic.
    """

    def __init__(self, bootstrap_servers: str | None = None, topic: str = TOPIC) -> None:
        self.bootstrap_servers = bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        self.topic = topic
        self._producer = None

    @property
    def configured(self) -> bool:
        return bool(self.bootstrap_servers)

    def _get(self):
        if self._producer is None:
            if not self.bootstrap_servers:
                raise StreamUnavailable("KAFKA_BOOTSTRAP_SERVERS is not set")
            from kafka import KafkaProducer

            from streaming.broker import KafkaSettings

            settings = KafkaSettings.from_env(self.bootstrap_servers)
            self._producer = KafkaProducer(**settings.config(), acks="all", linger_ms=0,
                                           request_timeout_ms=5000, max_block_ms=5000)
        return self._producer

    async def publish(self, event: Event) -> dict[str, Any]:
        """Send ``event``; returns its topic, partition and offset once the broker has it."""
        loop = asyncio.get_running_loop()
        try:
            producer = await loop.run_in_executor(None, self._get)
            future = producer.send(self.topic, key=event.user_id.encode(), value=encode(event))
        except StreamUnavailable:
            raise
        except Exception as exc:
            raise StreamUnavailable(f"cannot reach Kafka: {exc}") from exc
        done: asyncio.Future = loop.create_future()

        def ok(meta):
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(meta))

        def failed(exc):
            loop.call_soon_threadsafe(lambda: done.done() or done.set_exception(exc))

        future.add_callback(ok)
        future.add_errback(failed)
        try:
            meta = await asyncio.wait_for(done, 10)
        except Exception as exc:
            raise StreamUnavailable(f"Kafka did not acknowledge the event: {exc}") from exc
        return {"event_id": event.dedup_id, "topic": meta.topic, "partition": meta.partition,
                "offset": meta.offset}

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None
