"""The live page at ``/`` in headless Chromium against the real loop: the single-process
host behind uvicorn, the embedded broker, the stream worker and Feast. The page asks for
the API key, shows a cold user's answer, posts a click through /v1/events and shows the
refreshed answer and the live metrics."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime

import httpx
import pytest

from ccrec.bundle import Bundle
from features.reader import MemoryFeatures, reader_from_config
from serve.api import Clicks
from serve.auth import Authenticator
from serve.plain import PlainHost, serving
from serve.runtime import wait_ready
from streaming.local import LocalLoop

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def test_the_page_is_public_and_the_data_is_not(bundles, api_key):
    from fastapi.testclient import TestClient

    client = TestClient(PlainHost(bundles[0], MemoryFeatures(),
                                  auth=Authenticator.from_file(api_key.file)).app)
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="key"' in page.text and "/v1/events" in page.text
    assert client.post("/v1/recommendations", json={"user_id": "u"}).status_code == 401
    assert client.get("/metrics").status_code == 401
    assert "/" not in client.get("/openapi.json").json()["paths"]


@pytest.fixture
def served(synthetic, bundles, api_key, broker, tmp_path):
    """The page's URL: the plain host on the real loop (broker, worker, Feast), auth on."""
    with LocalLoop(synthetic.path, tmp_path / "feast", bootstrap_servers=broker) as loop:
        host = PlainHost(bundles[0], reader_from_config(loop.features),
                         Clicks(loop.bootstrap_servers), auth=Authenticator.from_file(api_key.file))
        with serving(host.app) as url:
            wait_ready(url, timeout=60)
            yield url
        assert loop.worker.error is None


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER), (
        "headless Chromium is needed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,860"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def _text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def _top(driver) -> list[str]:
    return [li.text for li in driver.find_elements("css selector", "ol#top li")]


@pytest.mark.slow
def test_a_click_on_the_page_refreshes_the_top_k(served, browser, synthetic, bundles, api_key,
                                                  tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the page re-renders its panels: an element read mid-render is looked up again
    wait = WebDriverWait(browser, 60, poll_frequency=0.1,
                         ignored_exceptions=[StaleElementReferenceException])
    vocab = synthetic.vocab
    user, item = "page-user-1", vocab["items"][1]
    browser.get(f"{served}/?user={user}&item={item}&k=5")

    # no key yet: the page says the API wants one
    wait.until(lambda d: "401" in _text(d, "error"))
    assert "enter an API key" in _text(browser, "error")

    browser.find_element("id", "key").send_keys(api_key.key)
    browser.find_element("id", "use-key").click()
    wait.until(lambda d: _text(d, "cold") == "yes (popularity)")
    assert _text(browser, "version") == bundles[0].name
    assert _text(browser, "feature-time") == "none"
    before = _top(browser)
    assert len(before) == 5

    category = browser.find_element("css selector", "ol#top li").get_attribute("data-category")
    browser.find_element("css selector", "ol#top li button.click").click()
    wait.until(lambda d: _text(d, "refresh").startswith("refreshed in"))
    clicked = int(browser.find_element("id", "refresh").get_attribute("data-click-time"))
    assert abs(clicked - time.time()) < 120
    assert _text(browser, "cold") == "no"
    assert _text(browser, "feature-time") == (
        datetime.fromtimestamp(clicked, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    after = _top(browser)
    assert after != before

    # the list is this bundle's ranking of a user with one category interaction
    categories = vocab["categories"]
    reference = Bundle.load(bundles[0]).recommender()
    expected = reference.names(reference.recommend(
        [categories.index(category)], [[1]], None, k=5))
    shown = [li.get_attribute("data-category")
             for li in browser.find_elements("css selector", "ol#top li")]
    assert shown == [c for c, _ in expected]
    answer = httpx.post(f"{served}/v1/recommendations", json={"user_id": user, "k": 5},
                        headers=api_key.headers).json()
    assert shown == [c["category_id"] for c in answer["categories"]]
    assert len(browser.find_elements("css selector", "#clicks tr")) == 1
    picks = browser.find_elements("css selector", "#users option")
    assert [o.get_attribute("value") for o in picks] == [user]  # to pick again

    # the live panel: one click produced, the served version
    # the live panel shows what the API process's own /metrics says
    metrics = httpx.get(f"{served}/metrics", headers=api_key.headers).text
    produced = next(line.split()[-1] for line in metrics.splitlines()
                    if line.startswith("ccrec_events_produced_total "))
    assert float(produced) >= 1
    wait.until(lambda d: d.find_elements("id", "m-events")
               and _text(d, "m-events") == str(int(float(produced))))
    wait.until(lambda d: _text(d, "m-model") == bundles[0].name and _text(d, "m-errors") == "0")

    shot = tmp_path / "page.png"
    browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
