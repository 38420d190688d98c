"""End to end on the single-process host and the embedded broker: recommend → impression
log → click → the online accuracy consumer writes the joined row, exports the metric, and
the report shows it."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from ccrec.online import load_log, online_table
from features.reader import reader_from_config
from serve.api import Clicks
from serve.auth import Authenticator, Scope, new_key
from serve.plain import PlainHost
from streaming.broker import KafkaSettings
from streaming.online_accuracy import JoinConfig, OnlineAccuracy

KEY, RECORD = new_key("tests", list(Scope))
HEADERS = {"authorization": f"Bearer {KEY}"}


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.1)


@pytest.fixture
def online(broker, tmp_path):
    """The consumer on a fresh impressions topic, reading from the start."""
    topic = f"ccrec.recommendations.t{uuid.uuid4().hex[:8]}"
    consumer = OnlineAccuracy(
        KafkaSettings(broker), tmp_path / "online", JoinConfig(window_s=600, grace_s=0.5),
        group_id=f"g-{topic}", topics=(topic, "ccrec.interactions"),
        auto_offset_reset="earliest", max_poll_interval_ms=4000, session_timeout_ms=4000,
        heartbeat_interval_ms=500)
    consumer.start()
    assert consumer.assigned.wait(30), "the consumer got no partitions from its group"
    yield consumer
    consumer.stop()


def test_recommend_click_online_hit_rate(bundles, synthetic, broker, online, tmp_path) -> None:
    host = PlainHost(bundles[0], reader_from_config(
        {"source": "prepared", "path": str(synthetic.path)}), Clicks(broker),
        auth=Authenticator({RECORD.id: RECORD}), impressions=False)
    host.pipeline.log_impressions(broker, True, topic=online.impressions_topic)
    tag = uuid.uuid4().hex[:6]
    # Users of this run only (the clicks topic is shared): cold, answered by popularity.
    users = [f"{tag}-a", f"{tag}-b"]

    async def go() -> list[dict]:
        transport = httpx.ASGITransport(app=host.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                     headers=HEADERS) as client:
            answers = []
            for user in users:
                r = await client.post("/v1/recommendations", json={"user_id": user, "k": 3})
                assert r.status_code == 200
                answers.append(r.json())
            wait_for(lambda: host.pipeline.impressions.counts["produced"] == 2)
            all_categories = synthetic.vocab["categories"][1:]
            hit = answers[0]["categories"][0]["category_id"]  # the first user's top 1
            shown = {c["category_id"] for c in answers[1]["categories"]}
            miss = next(c for c in all_categories if c not in shown)  # outside the top 3
            for user, category in ((users[0], hit), (users[1], miss)):
                r = await client.post("/v1/events", json={
                    "user_id": user, "item_id": f"{tag}-item", "category_id": category,
                    "event_type": "click", "timestamp": int(time.time()),
                    "event_id": f"{tag}-{user}"})
                assert r.status_code == 202
            return answers

    answers = asyncio.run(go())
    wait_for(lambda: online.rows_written == 2)
    rows = load_log(tmp_path / "online")
    version = answers[0]["model_version"]
    assert sorted(rows["request_id"]) == sorted(a["request_id"] for a in answers)
    by_user = rows.set_index("user_id")
    assert (by_user.loc[users[0], "rank"], bool(by_user.loc[users[0], "hit_at_1"])) == (1, True)
    assert (by_user.loc[users[1], "rank"], bool(by_user.loc[users[1], "hit_at_3"])) == (0, False)
    table = online_table(rows).set_index("model_version")
    assert table.loc[version, "HR@1"] == 0.5 and table.loc[version, "points"] == 2
    value = online.exporter.registry.get_sample_value
    assert value("ccrec_online_accuracy", {"model_version": version, "metric": "HR@1"}) == 0.5
    assert value("ccrec_online_points_total", {"model_version": version}) == 2
    host.pipeline.impressions.close()
