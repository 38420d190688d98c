"""Serving latency: the Ray Serve graph vs the same pipeline in one FastAPI process.

Prints JSON: p50/p99 latency and throughput of POST /v1/recommendations at
concurrency 1, 8 and 32 for both hosts in the same run (same bundle, same
in-memory features), their p99 ratio at concurrency 1, and the
click-to-refreshed-recommendation latency through the embedded broker, the
stream worker and Feast.

    .venv/bin/python -m benchmarks.serve [--requests 400] [--bundle DIR --prepared DIR]

By default the bundle is the ML-1M configuration (full model size) trained one
epoch per stage on a synthetic data set of 1,000 users and 18 categories, and
the users are that data set's. ``--bundle`` serves another bundle, with the
users of ``--prepared`` (a prepared data set with the bundle's vocabulary).

``--mode`` picks the Serve request path: ``fast`` (default) sets
RAY_SERVE_THROUGHPUT_OPTIMIZED=1 (direct ingress, gRPC between replicas, user
code on the replica's event loop) before Ray starts; ``haproxy`` adds
RAY_SERVE_ENABLE_HA_PROXY=1; ``default`` is Serve's stock path.

Both hosts check an API key on every request, as deployed (a key made for the run).

``--impressions`` adds a third host, the single-process app with the impression log on
(an embedded broker), interleaved with the others: its latency beside the plain host's
(log off) at every concurrency, their ratio, and the log's produced/dropped/failed
counts. ``--skip-serve`` leaves the Serve graph out (then no click-to-refresh figure).
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


def api_key(tmp: Path) -> dict[str, str]:
    """A key with every scope for this run: its hash goes to a keys file that both hosts
    read (``$CCREC_API_KEYS_FILE``, set before they start); the client's headers."""
    from serve.auth import KEYS_FILE_ENV, Scope, append_key, new_key

    key, record = new_key("benchmark", list(Scope))
    append_key(tmp / "api_keys.yaml", record)
    os.environ[KEYS_FILE_ENV] = str(tmp / "api_keys.yaml")
    return {"authorization": f"Bearer {key}"}


async def load(url: str, concurrency: int, requests: int, users: list[str],
               headers: dict[str, str], warmup: int = 30) -> dict:
    """``requests`` POSTs from ``concurrency`` workers; latency in ms, throughput in req/s."""
    rng = random.Random(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30,
                                 headers=headers) as client:
        for _ in range(warmup):
            (await client.post("/v1/recommendations", json={"user_id": users[0], "k": 3})
             ).raise_for_status()
        latencies: list[float] = []
        errors = 0
        remaining = requests

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                body = {"user_id": rng.choice(users), "k": 3}
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


def start_plain(bundle: str, features: dict, url: str, kafka: str | None = None
                ) -> subprocess.Popen:
    """The single-process host; with ``kafka``, its impression log on (else off)."""
    env = dict(os.environ, CCREC_BUNDLE=bundle, CCREC_FEATURES=json.dumps(features),
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), CCREC_IMPRESSIONS="1" if kafka else "0",
               **({"KAFKA_BOOTSTRAP_SERVERS": kafka} if kafka else {}))
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "serve.plain:from_env",
         "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1], "--log-level", "warning",
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

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    runtime.deploy(runtime.serve_config(bundle=bundle, features=features, port=port, replicas=1,
                                        batch={"batch_wait_timeout_s": batch_wait}))
    urls = {"proxy": f"http://127.0.0.1:{port}", "port": str(port)}
    if direct:
        urls["direct"] = f"http://127.0.0.1:{direct}"
    return urls


def synthetic_bundle(tmp: Path) -> tuple[Path, Path]:
    """A synthetic prepared data set and the ML-1M configuration trained on it for one
    epoch per stage: a real bundle of full model size (latency, not accuracy)."""
    import torch

    from ccrec.bundle import save_bundle
    from ccrec.config import load
    from ccrec.data.prepared import load_prepared
    from ccrec.data.synthetic import write_synthetic
    from ccrec.models.cascade import CascadeConfig
    from ccrec.train.cascade import train_cascade

    prepared_path = write_synthetic(tmp / "synthetic", num_users=1000, num_categories=18,
                                    num_items=3000, max_past=10,
                                    feature_cardinalities=(3, 8, 22))
    prepared = load_prepared(prepared_path)
    one_epoch = [f"train_{stage}.{key}" for stage in ("sampler", "encoder", "scorer")
                 for key in ("epochs=1", "progress=false")]
    config = load(CascadeConfig, ROOT / "ccrec" / "configs" / "ml-1m.yaml", one_epoch)
    torch.set_num_threads(1)
    bundle = save_bundle(train_cascade(prepared, config).model, config, prepared.vocab,
                         tmp / "bundles", dataset="synthetic")
    return prepared_path, bundle


def click_to_refresh_ms(serve_url: str, proxy_port: int, prepared_path: Path, bundle: str,
                        clicks: int, headers: dict[str, str]) -> dict:
    """Click → Kafka → stream worker → Feast → refreshed answer, through the Serve graph."""
    from ccrec.data.prepared import load_prepared
    from serve import runtime
    from streaming.local import LocalLoop, click_to_refresh

    prepared = load_prepared(prepared_path)
    vocab = prepared.vocab
    pairs = []  # (category, item) pairs seen in the data
    for row in prepared.split("train").itertuples():
        pairs += [(int(c), int(items[0])) for c, items in zip(row.past_categories,
                                                              row.past_items, strict=True)]
    tmp = Path(tempfile.mkdtemp(prefix="ccrec-bench-"))
    with LocalLoop(prepared_path, tmp / "feast") as loop:
        runtime.deploy(runtime.serve_config(bundle=bundle, features=loop.features,
                                            kafka=loop.bootstrap_servers, port=proxy_port,
                                            replicas=1))
        wait_http(serve_url)
        now = int(time.time())

        async def run() -> list[float]:
            out = []
            async with httpx.AsyncClient(base_url=serve_url, timeout=60,
                                         headers=headers) as client:
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc): what a shared machine's
    load does not inflate, unlike wall-clock latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def impression_counts(url: str, headers: dict[str, str]) -> dict[str, float]:
    """The host's ``ccrec_impressions_total`` by outcome (from its /metrics)."""
    text = httpx.get(url + "/metrics", headers=headers, timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith("ccrec_impressions_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = float(line.rsplit(" ", 1)[1])
    return out


def offer_cost_us(bootstrap_servers: str, n: int = 5_000) -> dict:
    """What the impression log adds to a request: ``ImpressionLog.offer`` timed one by one
    (µs), with the producing thread running against the broker meanwhile."""
    from streaming.broker import KafkaSettings
    from streaming.impressions import Impression, ImpressionLog

    log = ImpressionLog(KafkaSettings(bootstrap_servers), topic="ccrec.recommendations.bench")
    times = []
    for i in range(n):
        impression = Impression(f"b{i}", f"u{i % 100}", "v", ["c1", "c2", "c3"],
                                [0.5, 0.3, 0.2], 1_700_000_000)
        started = time.perf_counter_ns()
        log.offer(impression)
        times.append((time.perf_counter_ns() - started) / 1e3)
    log.close(timeout=60)
    return {"n": n, "p50_us": round(statistics.median(times), 2),
            "p99_us": round(percentile(times, 0.99), 2), **log.counts}


def main() -> None:
    # Ray and its subprocesses write to fd 1; keep stdout for the JSON alone.
    stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per concurrency level")
    parser.add_argument("--bundle", default=None,
                        help="model bundle (default: the ML-1M config, one epoch on synthetic "
                             "data)")
    parser.add_argument("--prepared", default=None,
                        help="prepared data set whose users are served (with --bundle)")
    parser.add_argument("--mode", choices=sorted(MODES), default="fast")
    parser.add_argument("--batch-wait", type=float, default=0.0)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--clicks", type=int, default=40,
                        help="clicks for click-to-refresh latency (0: skip)")
    parser.add_argument("--blocks", type=int, default=4, help="interleaved blocks per level")
    parser.add_argument("--impressions", action="store_true",
                        help="also the single-process host with the impression log on")
    parser.add_argument("--skip-serve", action="store_true", help="no Serve graph")
    parser.add_argument("--proxy", action="store_true",
                        help="also measure c=1 through the Serve proxy")
    args = parser.parse_args()

    from ccrec.data.prepared import load_prepared

    if args.bundle and not args.prepared:
        parser.error("--bundle needs --prepared (the data set whose users are served)")
    if args.bundle:
        prepared_path, bundle = Path(args.prepared), args.bundle
    else:
        prepared_path, bundle = synthetic_bundle(Path(tempfile.mkdtemp(prefix="ccrec-bench-")))
    prepared = load_prepared(prepared_path)
    users = [prepared.vocab["users"][u] for u in prepared.examples["user"].unique()]
    features = {"source": "prepared", "path": str(prepared_path)}
    levels = [int(c) for c in args.concurrency.split(",")]
    headers = api_key(Path(tempfile.mkdtemp(prefix="ccrec-bench-keys-")))
    from serve.runtime import free_port

    plain_url = f"http://127.0.0.1:{free_port()}"
    plain = None if args.skip_plain else start_plain(str(bundle), features, plain_url)
    logged = broker = None
    logged_url = f"http://127.0.0.1:{free_port()}"
    if args.impressions:
        from streaming.broker import EmbeddedBroker

        broker = EmbeddedBroker().start()
        logged = start_plain(str(bundle), features, logged_url, kafka=broker.bootstrap_servers)
    result: dict = {"mode": args.mode, "load_avg_1_5_15": os.getloadavg(),
                    "bundle": args.bundle or "ml-1m config, 1 epoch on 1,000 synthetic users",
                    "requests_per_level": args.requests, "concurrency": {}}
    try:
        urls = {} if args.skip_serve else start_serve(str(bundle), features, args.mode,
                                                      args.batch_wait)
        serve_url = urls.get("direct", urls.get("proxy"))
        if serve_url:
            result["serve_url"] = "direct ingress" if "direct" in urls else "serve proxy"
        for url in (serve_url, plain and plain_url, logged and logged_url):
            if url:
                wait_http(url)
        cpu_before = {p.pid: cpu_seconds(p.pid) for p in (plain, logged) if p}
        for c in levels:
            # Interleave the two hosts in blocks so that load from other processes on
            # this shared machine falls on both alike.
            hosts = {name: url for name, url in (
                ("serve", serve_url), ("plain", plain and plain_url),
                ("plain_impressions", logged and logged_url)) if url}
            lat: dict[str, list] = {name: [] for name in hosts}
            walls: dict[str, float] = dict.fromkeys(hosts, 0.0)
            for _ in range(args.blocks):
                for name, url in hosts.items():
                    block = asyncio.run(load(url, c, args.requests // args.blocks, users,
                                             headers, warmup=5))
                    lat[name] += block["latencies"]
                    walls[name] += block["wall"]
            row = {}
            for name in hosts:
                row.update({f"{name}_p50_ms": round(statistics.median(lat[name]), 2),
                            f"{name}_p99_ms": round(percentile(lat[name], 0.99), 2),
                            f"{name}_qps": round(len(lat[name]) / walls[name], 1)})
            if "proxy" in urls and "direct" in urls and c == 1 and args.proxy:
                via = asyncio.run(load(urls["proxy"], 1, args.requests, users, headers))
                row.update({"serve_via_proxy_p50_ms": via["p50_ms"],
                            "serve_via_proxy_p99_ms": via["p99_ms"]})
            if "plain" in hosts and "plain_impressions" in hosts:
                for q in ("p50", "p99"):
                    row[f"impressions_{q}_ratio"] = round(
                        row[f"plain_impressions_{q}_ms"] / row[f"plain_{q}_ms"], 3)
            result["concurrency"][str(c)] = row
            print(f"c={c}: {row}", file=sys.stderr)
        if logged:
            time.sleep(1.0)  # the last impressions' acknowledgements
            result["impressions"] = impression_counts(logged_url, headers)
            served = sum(args.requests // args.blocks * args.blocks + 5 * args.blocks
                         for _ in levels)
            if plain:
                # Both processes answered the same requests: CPU per answer, log off / on.
                result["cpu_ms_per_request"] = {
                    name: round(1e3 * (cpu_seconds(p.pid) - cpu_before[p.pid]) / served, 3)
                    for name, p in (("plain", plain), ("plain_impressions", logged))}
            result["impression_offer"] = offer_cost_us(broker.bootstrap_servers)
        if args.clicks and serve_url:
            result["click_to_refresh_ms"] = click_to_refresh_ms(
                serve_url, int(urls["port"]), prepared_path, str(bundle), args.clicks, headers)
            print(f"click_to_refresh_ms: {result['click_to_refresh_ms']}", file=sys.stderr)
        first = result["concurrency"].get("1", {})
        if "plain_p99_ms" in first and "serve_p99_ms" in first:
            result["p99_ratio_c1"] = round(first["serve_p99_ms"] / first["plain_p99_ms"], 2)
    finally:
        for process in (plain, logged):
            if process:
                process.terminate()
                process.wait(10)
        if broker:
            broker.stop()
        import ray
        from ray import serve

        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
    result["load_avg_1_5_15_end"] = os.getloadavg()
    result["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(result, indent=2), file=stdout, flush=True)


if __name__ == "__main__":
    main()
