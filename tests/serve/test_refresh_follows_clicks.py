"""Refresh does something: a cascade trained where the next category follows the last
click (NextCategory: c → c + 1, cyclic) serves, after each click, the category that
follows it; every click goes the real way (API → embedded Kafka broker → stream worker →
Feast → the single-process host's pipeline)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import torch
from untrained import DEBUG_CONFIG

from ccrec.bundle import save_bundle
from ccrec.config import load
from ccrec.data.prepared import load_prepared
from ccrec.data.synthetic import NextCategory, write_synthetic
from ccrec.models.cascade import CascadeConfig
from ccrec.train.cascade import train_cascade
from features.reader import reader_from_config
from serve.api import Clicks
from serve.auth import Authenticator
from serve.plain import PlainHost
from streaming.local import LocalLoop, click_to_refresh

pytestmark = pytest.mark.slow

C = 6  # categories c1..c6; item i belongs to category ((i - 1) mod 6) + 1
CLICKED = (3, 1, 5, 6, 2)  # one click per category, each a new category interaction


@pytest.fixture(scope="module")
def next_category(tmp_path_factory):
    """The prepared NextCategory data and a cascade trained on it (a few seconds)."""
    root = tmp_path_factory.mktemp("next-category")
    prepared = load_prepared(write_synthetic(root / "data", pattern=NextCategory(),
                                             num_users=600, num_categories=C, seed=5))
    config = load(CascadeConfig, DEBUG_CONFIG, [
        "train_sampler.epochs=6", "train_sampler.batch_size=32", "train_scorer.epochs=4"])
    torch.manual_seed(0)
    model = train_cascade(prepared, config).model
    return prepared, save_bundle(model, config, prepared.vocab, root / "bundles",
                                 version="next-category-1")


def test_served_top1_follows_each_click(next_category, api_key, tmp_path):
    prepared, bundle = next_category
    vocab = prepared.vocab
    with LocalLoop(prepared.path, tmp_path / "feast") as loop:
        host = PlainHost(bundle, reader_from_config(loop.features),
                         Clicks(loop.bootstrap_servers), Authenticator.from_file(api_key.file))
        now = int(time.time())
        clicks = [{"user_id": "follower", "item_id": vocab["items"][c],
                   "category_id": vocab["categories"][c], "timestamp": now - 600 + 10 * n,
                   "event_type": "click"} for n, c in enumerate(CLICKED)]

        async def run():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host.app),
                                         base_url="http://ccrec", timeout=30,
                                         headers=api_key.headers) as client:
                return [(await click_to_refresh(client, c, k=3, timeout=60))[1] for c in clicks]

        answers = asyncio.run(run())
        assert loop.worker.error is None
    tops = [a["categories"][0]["category_id"] for a in answers]
    assert tops == [f"c{c % C + 1}" for c in CLICKED]  # c4, c2, c6, c1, c3
    assert all(a["cold_start"] is False for a in answers)
