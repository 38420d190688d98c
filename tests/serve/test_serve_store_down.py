"""The feature store goes down and comes back (a real Redis online store, stopped and
restarted): 503 with the bundle's popularity as a flagged fallback, never a 500, and no
address or exception text in the answer."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid

import httpx
import pytest
import redis

from ccrec.bundle import Bundle
from features.reader import reader_from_config
from serve.auth import Authenticator
from serve.plain import PlainHost
from serve.runtime import free_port


class RedisServer:
    """A private redis-server on a free port (the shared one must stay up)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=1).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def redis_server():
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (the development machine and CI have it)")
    server = RedisServer()
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


def call(app, path: str, body=None) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            if body is None:
                return await client.get(path)
            return await client.post(path, json=body)

    return asyncio.run(go())


def test_store_down_is_503_with_a_popularity_fallback_then_recovers(redis_server, bundles,
                                                                    tmp_path):
    from features.store import open_store

    project = f"ccrec_down_{uuid.uuid4().hex[:8]}"
    redis_url = f"127.0.0.1:{redis_server.port}"
    open_store(tmp_path, "redis", project=project, redis_url=redis_url)  # registers the views
    reader = reader_from_config({"source": "feast", "environment": "redis",
                                 "root": str(tmp_path), "project": project,
                                 "redis_url": redis_url})
    app = PlainHost(bundles[0], reader, auth=Authenticator(insecure=True)).app
    up = call(app, "/v1/recommendations", {"user_id": "u1", "k": 3})
    assert up.status_code == 200 and up.json()["cold_start"] is True

    redis_server.stop()
    down = call(app, "/v1/recommendations", {"user_id": "u1", "k": 3})
    assert down.status_code == 503, down.text
    assert down.headers["retry-after"] == "5"
    body = down.json()
    assert body["detail"] == ("feature store unavailable: the fallback is the model's "
                              "popularity ranking")
    prior = Bundle.load(bundles[0]).recommender().popularity()
    top = [f"c{int(c) + 1}" for c in prior[1:].argsort(descending=True)[:3]]
    fallback = body["fallback"]
    assert [c["category_id"] for c in fallback["categories"]] == top
    assert fallback["cold_start"] is True and fallback["cold_start_strategy"] == "popularity"
    assert fallback["feature_timestamp"] is None and fallback["model_version"] == "untrained-1"
    assert str(redis_server.port) not in down.text and "Error" not in down.text
    ready = call(app, "/readyz")
    assert ready.status_code == 503 and ready.json()["features"] is False

    redis_server.start()  # the same port: the reader reconnects
    again = call(app, "/v1/recommendations", {"user_id": "u1", "k": 3})
    assert again.status_code == 200 and call(app, "/readyz").status_code == 200
    metrics = call(app, "/metrics").text
    assert "ccrec_feature_errors_total 1.0" in metrics
