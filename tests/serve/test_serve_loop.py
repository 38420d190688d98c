"""The whole real-time loop: POST /v1/events → Kafka (embedded Tansu) → stream worker →
Feast → the Serve graph's next recommendation reflects the click."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import httpx
import pytest
from conftest import post

from serve.loop import LocalLoop, click_to_refresh
from serve.runtime import wait_ready

pytestmark = pytest.mark.slow


def test_click_refreshes_the_next_recommendation(serve_graph, trained, tmp_path):
    deploy, url = serve_graph
    prepared_path, prepared, bundle = trained
    vocab = prepared.vocab
    item_category = _item_categories(prepared)
    with LocalLoop(prepared_path, tmp_path / "feast") as loop:
        deploy(bundle=str(bundle), features=loop.features, kafka=loop.bootstrap_servers)
        wait_ready(url, timeout=120)
        user = "loop-user-1"
        first = post(url, "/v1/recommendations", {"user_id": user, "k": 3}).json()
        assert first["cold_start"] is True and first["feature_timestamp"] is None

        now = int(time.time())
        items = sorted(item_category)[:2]
        clicks = [{"user_id": user, "item_id": vocab["items"][i],
                   "category_id": vocab["categories"][item_category[i]],
                   "timestamp": now - 600 + 10 * n, "event_type": "click"}
                  for n, i in enumerate(items)]

        async def run():
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                return [await click_to_refresh(client, c, timeout=90) for c in clicks]

        results = asyncio.run(run())
        for click, (seconds, answer) in zip(clicks, results, strict=True):
            assert answer["cold_start"] is False  # the click made the user warm
            stamp = datetime.fromisoformat(answer["feature_timestamp"].replace("Z", "+00:00"))
            assert int(stamp.timestamp()) == click["timestamp"]  # ... and it is this click
            assert seconds > 0
        assert loop.worker.error is None
        # the bundle's model version and the click's time are in the refreshed answer
        last = results[-1][1]
        assert last["model_version"] == bundle.name


def _item_categories(prepared) -> dict[int, int]:
    """item index → category index, from the prepared events."""
    out = {}
    for row in prepared.split("train").itertuples():
        for cat, items in zip(row.past_categories, row.past_items, strict=True):
            for item in items:
                out.setdefault(int(item), int(cat))
    return out
