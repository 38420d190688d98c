"""The whole real-time loop: POST /v1/events → Kafka (embedded Tansu) → stream worker →
Feast → the Serve graph's next recommendation reflects the click."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import httpx
import pytest

from ccrec.bundle import Bundle
from serve.runtime import wait_ready
from streaming.local import LocalLoop, click_to_refresh

pytestmark = pytest.mark.slow


def test_click_refreshes_the_next_recommendation(serve_graph, synthetic, bundles, tmp_path, post):
    deploy, url = serve_graph
    prepared, bundle = synthetic, bundles[0]
    vocab = prepared.vocab
    item_category = _item_categories(prepared)
    with LocalLoop(prepared.path, tmp_path / "feast") as loop:
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
        for click, (_, answer) in zip(clicks, results, strict=True):
            assert answer["cold_start"] is False  # the click made the user warm
            stamp = datetime.fromisoformat(answer["feature_timestamp"].replace("Z", "+00:00"))
            assert int(stamp.timestamp()) == click["timestamp"]  # ... and it is this click
        assert loop.worker.error is None
        # two clicks in two categories: two category interactions, ranked by this bundle
        last = results[-1][1]
        reference = Bundle.load(bundle).recommender()
        expected = reference.names(reference.recommend(
            [item_category[i] for i in items], [[i] for i in items], None, k=3))
        assert [c["category_id"] for c in last["categories"]] == [c for c, _ in expected]
        assert last["model_version"] == bundle.name


def _item_categories(prepared) -> dict[int, int]:
    """item index → category index, from the prepared events."""
    out = {}
    for row in prepared.split("train").itertuples():
        for cat, items in zip(row.past_categories, row.past_items, strict=True):
            for item in items:
                out.setdefault(int(item), int(cat))
    return out
