"""The Ray Serve graph: readiness before/after the model loads, the contract through
Serve, and a hot reload under load with zero failed requests."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from ccrec.bundle import Bundle
from serve.runtime import wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graph(serve_graph):
    return serve_graph


def test_not_ready_until_a_bundle_is_loaded_then_ready(graph, bundles, post):
    deploy, url = graph
    deploy(bundle=None)
    assert httpx.get(url + "/healthz").status_code == 200
    before = httpx.get(url + "/readyz")
    assert before.status_code == 503 and before.json()["model"]["ready"] is False
    r = post(url, "/v1/recommendations", {"user_id": "1"})
    assert r.status_code == 503 and "not ready" in r.json()["detail"]
    deploy(bundle=str(bundles[0]))
    wait_ready(url, timeout=120)
    ready = httpx.get(url + "/readyz").json()
    assert ready["model"]["version"] == "untrained-1" and ready["features"] is True


def test_contract_through_serve(graph, bundles, synthetic, post):
    deploy, url = graph
    wait_ready(url, timeout=120)
    warm = post(url, "/v1/recommendations", {"user_id": "1", "k": 4})
    assert warm.status_code == 200, warm.text
    body = warm.json()
    row = synthetic.examples.set_index("user").loc[1]
    reference = Bundle.load(bundles[0]).recommender()
    expected = reference.names(reference.recommend(
        [int(c) for c in row.past_categories], [[int(i) for i in ci] for ci in row.past_items],
        [int(f) for f in row.user_features], k=4))
    assert [c["category_id"] for c in body["categories"]] == [c for c, _ in expected]
    assert body["cold_start"] is False and body["model_version"] == "untrained-1"
    cold = post(url, "/v1/recommendations", {"user_id": "nobody-knows-me"}).json()
    assert cold["cold_start"] is True and cold["cold_start_strategy"] == "popularity"
    assert post(url, "/v1/recommendations", {"user_id": "1", "k": 21}).status_code == 422
    assert post(url, "/v1/recommendations", {"user_id": 3}).status_code == 422
    big = post(url, "/v1/recommendations", {"user_id": "1", "exclude": ["x" * 250] * 100})
    assert big.status_code == 413
    metrics = httpx.get(url + "/metrics").text
    assert 'ccrec_stage_latency_seconds_count{stage="sampler"}' in metrics


async def _load(url: str, stop: asyncio.Event, concurrency: int = 4) -> list[tuple[int, str]]:
    seen: list[tuple[int, str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def worker(i: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                r = await client.post("/v1/recommendations", json={"user_id": str((i + n) % 50)})
                seen.append((r.status_code, r.json().get("model_version", r.text)))

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return seen


def test_hot_reload_under_load_has_zero_failed_requests(graph, bundles):
    deploy, url = graph
    wait_ready(url, timeout=120)

    async def scenario():
        stop = asyncio.Event()
        load = asyncio.create_task(_load(url, stop))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(deploy, bundle=str(bundles[1]))  # user_config → reconfigure
        deadline = time.time() + 120
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            while time.time() < deadline:
                r = await client.get("/readyz")
                if r.status_code == 200 and r.json()["model"]["version"] == "untrained-2":
                    break
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        stop.set()
        return await load

    seen = asyncio.run(scenario())
    failures = [s for s in seen if s[0] != 200]
    assert not failures, failures[:5]
    versions = [v for _, v in seen]
    assert "untrained-1" in versions and versions[-1] == "untrained-2", versions[::10]
    assert set(versions) <= {"untrained-1", "untrained-2"}


def test_fuzz_through_serve_never_answers_5xx(graph, fuzz_config):
    """A few schema-generated requests (valid and invalid) through the Serve graph."""
    _, url = graph
    wait_ready(url, timeout=120)
    schema = schemathesis.openapi.from_url(url + "/openapi.json", config=fuzz_config)
    operation = schema["/v1/recommendations"]["POST"]

    @given(case=operation.as_strategy())
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case):
        case.call_and_validate()

    run()
