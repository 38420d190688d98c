"""The HTTP contract on the single-process app (in-process ASGI, no Ray): valid and
invalid requests, cold start, readiness, metrics, and a schema-driven fuzz."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import pytest
import schemathesis
from conftest import MemoryPublisher
from hypothesis import HealthCheck, settings

from serve.features import MemoryFeatures, UserFeatures
from serve.plain import LocalService, build_app

NOW = int(time.time())
USERS = {
    "warm": UserFeatures([1, 2, 3, 4], [[1, 2], [3], [4, 5], [6]], [1, 5, 9], NOW - 5),
    "profile-only": UserFeatures([], [], [2, 7, 11], 0),
    "new-with-live-popularity": UserFeatures([], [], [], 0, popular_categories=[5, 9],
                                             popular_counts=[30, 10]),
}


@pytest.fixture(scope="module")
def app(toy_bundles):
    return build_app(toy_bundles[0], MemoryFeatures(USERS), MemoryPublisher())


def call(app, method: str, path: str, **kwargs) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_warm_user_gets_k_scored_categories(app):
    r = call(app, "POST", "/v1/recommendations", json={"user_id": "warm", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == "warm" and body["model_version"] == "toy-1"
    assert len(body["categories"]) == 5
    scores = [c["score"] for c in body["categories"]]
    assert scores == sorted(scores, reverse=True)
    assert body["cold_start"] is False and body["cold_start_strategy"] is None
    assert body["feature_timestamp"] is not None


def test_exclude_and_large_k(app):
    first = call(app, "POST", "/v1/recommendations", json={"user_id": "warm", "k": 20}).json()
    names = [c["category_id"] for c in first["categories"]]
    assert len(names) == 18 and len(set(names)) == 18  # toy |C| = 18 < k: all, no repeats
    r = call(app, "POST", "/v1/recommendations",
              json={"user_id": "warm", "k": 3, "exclude": names[:2] + ["no-such-category"]})
    got = [c["category_id"] for c in r.json()["categories"]]
    assert r.status_code == 200 and not set(got) & set(names[:2])


def test_cold_start_is_flagged(app):
    unknown = call(app, "POST", "/v1/recommendations", json={"user_id": "stranger"}).json()
    assert unknown["cold_start"] is True and unknown["cold_start_strategy"] == "popularity"
    assert len(unknown["categories"]) == 3 and unknown["feature_timestamp"] is None
    profile = call(app, "POST", "/v1/recommendations", json={"user_id": "profile-only"}).json()
    assert profile["cold_start"] is True and profile["cold_start_strategy"] == "profile"
    live = call(app, "POST", "/v1/recommendations",
                json={"user_id": "new-with-live-popularity", "k": 2}).json()
    assert live["cold_start_strategy"] == "popularity"
    assert [c["category_id"] for c in live["categories"]] == ["cat-5", "cat-9"]


@pytest.mark.parametrize("body", [
    {"user_id": "warm", "k": 0},
    {"user_id": "warm", "k": 21},
    {"user_id": "warm", "k": "3"},
    {"user_id": "warm", "k": 2.5},
    {"user_id": "warm", "k": True},
    {"user_id": 12},
    {"user_id": ""},
    {"user_id": "x" * 300},
    {"k": 3},
    {"user_id": "warm", "exclude": "cat-1"},
    {"user_id": "warm", "exclude": ["cat-1"] * 101},
    {"user_id": "warm", "unknown_field": 1},
    [],
    "warm",
    None,
])
def test_bad_recommendation_requests_get_422_with_a_message(app, body):
    r = call(app, "POST", "/v1/recommendations", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_malformed_and_oversized_bodies(app):
    bad_json = call(app, "POST", "/v1/recommendations", content=b"{not json",
                    headers={"content-type": "application/json"})
    assert bad_json.status_code == 422
    huge = call(app, "POST", "/v1/recommendations",
                json={"user_id": "warm", "exclude": ["x" * 200] * 100})
    assert huge.status_code == 413 and "bytes" in huge.json()["detail"]
    wrong_method = call(app, "GET", "/v1/recommendations")
    assert wrong_method.status_code == 405


def test_events_validate_and_produce(app):
    ok = call(app, "POST", "/v1/events", json={
        "user_id": "warm", "item_id": "i1", "category_id": "cat-3",
        "timestamp": "2024-01-01T00:00:00Z"})
    assert ok.status_code == 202, ok.text
    assert ok.json()["event_id"] == "warm|i1|cat-3|1704067200"
    for bad in ({"user_id": "warm"},
                {"user_id": "warm", "item_id": "i", "category_id": "c", "timestamp": "yesterday"},
                {"user_id": "warm", "item_id": "i", "category_id": "c",
                 "timestamp": "2024-01-01T00:00:00Z", "event_type": "stare"}):
        r = call(app, "POST", "/v1/events", json=bad)
        assert r.status_code == 422, r.text


def test_events_without_a_broker_are_503():
    app = build_app(None, MemoryFeatures())
    app.state.service.publisher.bootstrap_servers = None
    r = call(app, "POST", "/v1/events", json={
        "user_id": "u", "item_id": "i", "category_id": "c", "timestamp": 1700000000})
    assert r.status_code == 503 and "KAFKA_BOOTSTRAP_SERVERS" in r.json()["detail"]


def test_readiness_before_and_after_model_load(toy_bundles):
    service = LocalService(None, MemoryFeatures(USERS), MemoryPublisher())
    from serve.api import create_app

    app = create_app(service)
    assert call(app, "GET", "/healthz").status_code == 200
    before = call(app, "GET", "/readyz")
    assert before.status_code == 503 and before.json()["model"]["ready"] is False
    assert call(app, "POST", "/v1/recommendations", json={"user_id": "warm"}).status_code == 503
    assert service.load(toy_bundles[1])
    after = call(app, "GET", "/readyz")
    assert after.status_code == 200 and after.json()["model"]["version"] == "toy-2"
    assert call(app, "POST", "/v1/recommendations", json={"user_id": "warm"}).status_code == 200


def test_broken_bundle_keeps_serving_the_old_one(toy_bundles, tmp_path):
    service = LocalService(toy_bundles[0], MemoryFeatures(USERS), MemoryPublisher())
    (tmp_path / "bundle.json").write_text("{not json")
    assert not service.load(tmp_path)
    assert service.slot.version == "toy-1" and service.slot.error


def test_metrics_cover_routes_stages_model_and_feature_age(app):
    call(app, "POST", "/v1/recommendations", json={"user_id": "warm"})
    call(app, "POST", "/v1/recommendations", json={"user_id": "warm", "k": 99})
    text = call(app, "GET", "/metrics").text
    for needle in ('ccrec_request_latency_seconds_bucket{le="0.001",route="/v1/recommendations"}',
                   'ccrec_stage_latency_seconds_count{stage="scorer"}',
                   'ccrec_stage_latency_seconds_count{stage="features"}',
                   'ccrec_requests_total{route="/v1/recommendations",status="422"}',
                   'ccrec_model_info{version="toy-1"} 1.0',
                   "ccrec_feature_age_seconds_count"):
        assert needle in text, needle


def test_openapi_documents_the_api(app):
    spec = call(app, "GET", "/openapi.json").json()
    assert {"/v1/recommendations", "/v1/events", "/healthz", "/readyz", "/metrics"} <= set(
        spec["paths"])
    k = spec["components"]["schemas"]["RecommendationRequest"]["properties"]["k"]
    assert (k["minimum"], k["maximum"]) == (1, 20)


# --- schema-driven fuzz: every operation, valid and invalid data, no 5xx, responses
# --- conform to the documented schema.
_fuzz_app = None


def _fuzz_schema():
    from serve.model import write_toy_bundle

    global _fuzz_app
    import tempfile

    bundle = write_toy_bundle(tempfile.mkdtemp(prefix="ccrec-fuzz-"))
    _fuzz_app = build_app(bundle, MemoryFeatures(USERS), MemoryPublisher())
    return schemathesis.openapi.from_asgi("/openapi.json", _fuzz_app)


schema = _fuzz_schema()


@schema.parametrize()
@settings(max_examples=int(os.environ.get("CCREC_FUZZ_EXAMPLES", 30)), deadline=None,
          suppress_health_check=list(HealthCheck))
def test_fuzz_openapi_contract(case):
    response = case.call()
    if _outside_timestamp_range(response):
        # The accepted range ends at the server's clock (ccrec.schema.check_timestamp_range),
        # which a JSON Schema cannot state: a schema-valid later timestamp gets this 422.
        return
    case.validate_response(response)


def _outside_timestamp_range(response) -> bool:
    from ccrec.schema import TIMESTAMP_RANGE_ERROR

    return response.status_code == 422 and all(
        error["type"] == TIMESTAMP_RANGE_ERROR for error in response.json()["detail"])


def test_cli_writes_the_openapi_docs(tmp_path):
    import json

    from click.testing import CliRunner

    from serve.cli import serve

    out = tmp_path / "openapi.json"
    result = CliRunner().invoke(serve, ["openapi", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "/v1/recommendations" in json.loads(out.read_text())["paths"]
