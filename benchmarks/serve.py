"""Serving latency: the Ray Serve graph vs the same models in one FastAPI process.

Prints JSON: p50/p99 latency and throughput of POST /v1/recommendations at
concurrency 1, 8 and 32 for both hosts in the same run (same toy bundle or a
real one, same feature source), their p99 ratio at concurrency 1, and — when
the embedded broker, the stream worker and Feast are available — the
click-to-refreshed-recommendation latency.

    .venv/bin/python benchmarks/serve.py [--requests 400] [--bundle DIR] [--mode fast]

``--mode`` picks the Serve request path: ``fast`` (default) sets
RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (direct ingress, gRPC between replicas, user
code on the replica's event loop) before Ray starts; ``haproxy`` adds
RAY_SERVE_ENABLE_HA_PROXY=1; ``default`` is Serve's stock path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = {
    "default": {},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
    "fast": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    "fast+haproxy": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def load(url: str, concurrency: int, requests: int, users: int, warmup: int = 30) -> dict:
    """``requests`` POSTs from ``concurrency`` workers; latency in ms, throughput in req/s."""
    rng = random.Random(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        for _ in range(warmup):
            (await client.post("/v1/recommendations", json={"user_id": "u0", "k": 3})
             ).raise_for_status()
        latencies: list[float] = []
        errors = 0
        remaining = requests

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                body = {"user_id": f"u{rng.randrange(users)}", "k": 3}
                t = time.perf_counter()
                r = await client.post("/v1/recommendations", json=body)
                latencies.append((time.perf_counter() - t) * 1e3)
                errors += r.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{errors} failed requests against {url}")
    return {"p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "qps": round(len(latencies) / wall, 1), "latencies": latencies, "wall": wall}


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def start_plain(bundle: str, features: dict, port: int) -> subprocess.Popen:
    env = dict(os.environ, CCREC_BUNDLE=bundle, CCREC_FEATURES=json.dumps(features),
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "serve.plain:from_env",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--loop", "uvloop", "--http", "httptools", "--no-access-log"],
        env=env, cwd=ROOT)


def start_serve(bundle: str, features: dict, mode: str, batch_wait: float) -> dict[str, str]:
    """Ray + the Serve graph; the URLs of the proxy and (fast path) the direct ingress."""
    from serve import runtime
    from serve.runtime import apply_fast_path, free_port

    direct = None
    if mode.startswith("fast"):
        direct = apply_fast_path(free_port())
    os.environ.update({k: v for k, v in MODES[mode].items()})
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    runtime.deploy(runtime.serve_config(bundle=bundle, features=features, port=port, replicas=1,
                                        batch={"batch_wait_timeout_s": batch_wait}))
    urls = {"proxy": f"http://127.0.0.1:{port}", "port": str(port)}
    if direct:
        urls["direct"] = f"http://127.0.0.1:{direct}"
    return urls


def click_to_refresh_ms(serve_url: str, proxy_port: int, clicks: int) -> dict:
    """Click → Kafka → stream worker → Feast → refreshed answer, through the Serve graph
    (a cascade bundle trained on the synthetic data set with the debug config)."""
    import torch

    from ccrec.bundle import save_bundle
    from ccrec.config import load
    from ccrec.data.prepared import load_prepared
    from ccrec.data.synthetic import write_synthetic
    from ccrec.train.cascade import CascadeConfig, train_cascade
    from serve import runtime
    from serve.loop import LocalLoop, click_to_refresh

    tmp = Path(tempfile.mkdtemp(prefix="ccrec-bench-"))
    prepared_path = write_synthetic(tmp / "synthetic")
    prepared = load_prepared(prepared_path)
    config = load(CascadeConfig, ROOT / "ccrec" / "configs" / "debug.yaml", [])
    torch.set_num_threads(1)
    bundle = save_bundle(train_cascade(prepared, config).model, config, prepared.vocab,
                         tmp / "bundles", dataset="synthetic")
    vocab = prepared.vocab
    pairs = []  # (category, item) pairs seen in the data
    for row in prepared.split("train").itertuples():
        pairs += [(int(c), int(items[0])) for c, items in zip(row.past_categories,
                                                              row.past_items, strict=True)]
    with LocalLoop(prepared_path, tmp / "feast") as loop:
        runtime.deploy(runtime.serve_config(bundle=str(bundle), features=loop.features,
                                            kafka=loop.bootstrap_servers, port=proxy_port,
                                            replicas=1))
        wait_http(serve_url)
        now = int(time.time())

        async def run() -> list[float]:
            out = []
            async with httpx.AsyncClient(base_url=serve_url, timeout=60) as client:
                for n in range(clicks + 2):
                    cat, item = pairs[n % len(pairs)]
                    event = {"user_id": f"bench-{n % 5}", "item_id": vocab["items"][item],
                             "category_id": vocab["categories"][cat], "event_type": "click",
                             "timestamp": now - 3600 + n}
                    seconds, _ = await click_to_refresh(client, event, poll_s=0.005)
                    out.append(seconds * 1e3)
            return out[2:]  # the first clicks warm up the consumer and the stores

        latencies = asyncio.run(run())
    return {"p50": round(statistics.median(latencies), 1),
            "p99": round(percentile(latencies, 0.99), 1), "clicks": len(latencies)}


def main() -> None:
    # Ray and its subprocesses write to fd 1; keep stdout for the JSON alone.
    stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per concurrency level")
    parser.add_argument("--bundle", default=None, help="model bundle (default: a toy bundle)")
    parser.add_argument("--mode", choices=sorted(MODES), default="fast")
    parser.add_argument("--batch-wait", type=float, default=0.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--clicks", type=int, default=40,
                        help="clicks for click-to-refresh latency (0: skip)")
    parser.add_argument("--blocks", type=int, default=4, help="interleaved blocks per level")
    parser.add_argument("--proxy", action="store_true",
                        help="also measure c=1 through the Serve proxy")
    args = parser.parse_args()

    from serve.model import write_toy_bundle

    bundle = args.bundle or str(write_toy_bundle(Path(tempfile.mkdtemp()) / "toy"))
    features = {"source": "synthetic", "users": args.users}
    levels = [int(c) for c in args.concurrency.split(",")]
    plain = None if args.skip_plain else start_plain(bundle, features, 8765)
    result: dict = {"mode": args.mode, "bundle": "toy" if not args.bundle else args.bundle,
                    "requests_per_level": args.requests, "concurrency": {}}
    try:
        urls = start_serve(bundle, features, args.mode, args.batch_wait)
        serve_url = urls.get("direct", urls["proxy"])
        result["serve_url"] = "direct ingress" if "direct" in urls else "serve proxy"
        wait_http(serve_url)
        if plain:
            wait_http("http://127.0.0.1:8765")
        for c in levels:
            # Interleave the two hosts in blocks so that load from other processes on
            # this shared machine falls on both alike.
            lat: dict[str, list] = {"serve": [], "plain": []}
            walls: dict[str, float] = {"serve": 0.0, "plain": 0.0}
            hosts = {"serve": serve_url, **({"plain": "http://127.0.0.1:8765"} if plain else {})}
            for _ in range(args.blocks):
                for name, url in hosts.items():
                    block = asyncio.run(load(url, c, args.requests // args.blocks, args.users,
                                             warmup=5))
                    lat[name] += block["latencies"]
                    walls[name] += block["wall"]
            row = {}
            for name in hosts:
                row.update({f"{name}_p50_ms": round(statistics.median(lat[name]), 2),
                            f"{name}_p99_ms": round(percentile(lat[name], 0.99), 2),
                            f"{name}_qps": round(len(lat[name]) / walls[name], 1)})
            if "proxy" in urls and "direct" in urls and c == 1 and args.proxy:
                via = asyncio.run(load(urls["proxy"], 1, args.requests, args.users))
                row.update({"serve_via_proxy_p50_ms": via["p50_ms"],
                            "serve_via_proxy_p99_ms": via["p99_ms"]})
            result["concurrency"][str(c)] = row
            print(f"c={c}: {row}", file=sys.stderr)
        if args.clicks:
            result["click_to_refresh_ms"] = click_to_refresh_ms(serve_url, int(urls["port"]),
                                                                args.clicks)
            print(f"click_to_refresh_ms: {result['click_to_refresh_ms']}", file=sys.stderr)
        first = result["concurrency"].get("1", {})
        if "plain_p99_ms" in first:
            result["p99_ratio_c1"] = round(first["serve_p99_ms"] / first["plain_p99_ms"], 2)
    finally:
        if plain:
            plain.terminate()
            plain.wait(10)
        import ray
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
    print(json.dumps(result, indent=2), file=stdout, flush=True)


if __name__ == "__main__":
    main()
