"""Click → refreshed top k as the live page shows it, in headless Chromium, next to the same
number of clicks from a Python client (``streaming.local.click_to_refresh``), in one run.

    .venv/bin/python -m benchmarks.page [--clicks 20] [--bundle DIR --prepared DIR]

The single-process host (uvicorn in this process, API key checked) on the real loop:
embedded broker, stream worker and Feast (SQLite). Both clients poll every 50 ms (the
page's interval) from a process of their own, so the difference is the browser's own
cost: its fetch calls, JSON and rendering. The first two clicks of each warm up the
stores and are not counted. By default the bundle is benchmarks.serve's (the ML-1M
configuration, one epoch per stage on a synthetic data set). Prints JSON and writes
benchmarks/results/page.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx

from benchmarks.serve import api_key, percentile, synthetic_bundle, wait_http

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.05
WARM_UP = 2


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": round(statistics.median(values), 1),
            "p95": round(percentile(values, 0.95), 1), "mean": round(statistics.mean(values), 1)}


def pairs_of(prepared_path: Path) -> list[tuple[str, str]]:
    """(category id, item id) pairs of the data set's training users, in order."""
    from ccrec.data.prepared import load_prepared

    prepared = load_prepared(prepared_path)
    vocab, out = prepared.vocab, []
    for row in prepared.split("train").itertuples():
        out += [(vocab["categories"][int(c)], vocab["items"][int(items[0])])
                for c, items in zip(row.past_categories, row.past_items, strict=True)]
    return out


def page_clicks(url: str, key: str, pairs: list[tuple[str, str]], clicks: int) -> list[float]:
    """The refresh times the page shows for ``clicks`` clicks (ms)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        wait = WebDriverWait(driver, 60, poll_frequency=0.05)
        driver.get(f"{url}/?user=bench-page")
        driver.find_element("id", "key").send_keys(key)
        driver.find_element("id", "use-key").click()
        wait.until(lambda d: d.find_element("id", "cold").text.startswith("yes"))
        for n in range(clicks + WARM_UP):
            category, item = pairs[n % len(pairs)]
            for field, value in (("item", item), ("category", category)):
                driver.find_element("id", field).clear()
                driver.find_element("id", field).send_keys(value)
            driver.find_element("id", "click-other").click()
            wait.until(lambda d, n=n: len(d.find_elements("css selector", "#clicks tr")) > n)
        rows = driver.find_elements("css selector", "#clicks tr td:last-child")
        shown = [float(r.text.removesuffix(" ms")) for r in reversed(rows)]  # newest first
    finally:
        driver.quit()
    return shown[WARM_UP:]


async def client_clicks(url: str, headers: dict[str, str], pairs: list[tuple[str, str]],
                        clicks: int) -> list[float]:
    from streaming.local import click_to_refresh

    out, last = [], 0
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        for n in range(clicks + WARM_UP):
            category, item = pairs[n % len(pairs)]
            last = max(int(time.time()), last + 1)
            event = {"user_id": "bench-client", "item_id": item, "category_id": category,
                     "event_type": "click", "timestamp": last}
            seconds, _ = await click_to_refresh(client, event, k=5, poll_s=POLL_S)
            out.append(seconds * 1e3)
    return out[WARM_UP:]


def run_client(url: str, headers: dict[str, str], pairs: list[tuple[str, str]],
               clicks: int) -> list[float]:
    """:func:`client_clicks` in its own process (as the browser is): the host's threads in
    this process would otherwise slow the client down."""
    return asyncio.run(client_clicks(url, headers, pairs, clicks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--prepared", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "page.json")
    args = parser.parse_args()
    import feast  # noqa: F401  (importing Feast resets the DeprecationWarning filter)

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the clients' imports


    from features.reader import reader_from_config
    from serve.api import Clicks
    from serve.plain import PlainHost, serving
    from streaming.local import LocalLoop

    tmp = Path(tempfile.mkdtemp(prefix="ccrec-page-"))
    if args.bundle:
        prepared_path, bundle = args.prepared, args.bundle
    else:
        print("training the benchmark bundle (one epoch per stage)…", file=sys.stderr)
        prepared_path, bundle = synthetic_bundle(tmp)
    headers = api_key(tmp)
    pairs = pairs_of(prepared_path)
    load_before = os.getloadavg()
    with LocalLoop(prepared_path, tmp / "feast") as loop:
        host = PlainHost(bundle, reader_from_config(loop.features), Clicks(loop.bootstrap_servers))
        with serving(host.app) as url:
            wait_http(url)
            print(f"{args.clicks} clicks on the page, then {args.clicks} from the client…",
                  file=sys.stderr)
            key = headers["authorization"].removeprefix("Bearer ")
            page = page_clicks(url, key, pairs, args.clicks)
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                client = pool.apply(run_client,
                                    (url, headers, pairs[1:] + pairs[:1], args.clicks))
    result = {
        "what": "click → refreshed top k (ms): the live page in headless Chromium vs a Python "
                "client in its own process, same host, loop and poll interval, one run",
        "host": "single process (uvicorn), API key checked", "poll_s": POLL_S,
        "bundle": Path(bundle).name, "page_ms": summary(page), "client_ms": summary(client),
        "page_over_client_p50": round(statistics.median(page) / statistics.median(client), 2),
        "load_average_1m": {"before": round(load_before[0], 1),
                            "after": round(os.getloadavg()[0], 1)},
        "cpus": os.cpu_count(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
