"""``ccrec demo``: the whole system on one machine, end to end, in a few minutes.

fetch ML-1M → prepare → train the cascade on Ray (local, a small config) →
evaluate (results table + plots) → embedded Kafka broker + Feast + stream
worker → Ray Serve → replay one user's clicks through ``POST /v1/events`` and
show their top categories changing as the clicks arrive → one continuous-training
cycle on what the stream wrote (:mod:`demo.retrain`), which the service picks up by
itself → another user's clicks, and the online accuracy per model version → stop
everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import click
from rich import box
from rich.console import Console
from rich.table import Table

from ccrec.console import announce, console, mute, quiet_libraries

#: A small cascade for the demo (minutes on 2 cores); `ccrec train` uses the full config.
DEMO_OVERRIDES = (
    "sampler.d_model=32", "sampler.n_layers=1", "sampler.ff_dim=64", "sampler.hidden=64",
    "encoder.item_profile_dim=128", "encoder.hidden=64", "encoder.latent_dim=32",
    "scorer.d_model=32", "scorer.hidden=64",
    "train_sampler.epochs=2", "train_encoder.epochs=1", "train_scorer.epochs=2",
    "train_sampler.progress=false", "train_encoder.progress=false",
    "train_scorer.progress=false",
)
TOP_K = 5
#: Categories per click on the console (the full top k goes to replay.md), and its width.
SHOWN, WIDTH = 3, 100
STEPS = ("fetch + prepare", "train the cascade", "evaluate",
         "broker + Feast + stream worker", "Ray Serve", "replay clicks",
         "continuous training: one cycle", "stop")


def _quiet_libraries() -> None:
    """The console shows the demo's steps; the libraries' logs, warnings and progress bars
    go to the log file (:mod:`ccrec.console`)."""
    import feast  # noqa: F401  (importing Feast resets the DeprecationWarning filter)

    quiet_libraries()
    mute("streaming", "features")  # the in-process worker's lines: in the log file


def _step(i: int, started: float) -> None:
    console.print(f"[bold cyan][{i}/{len(STEPS)}][/] {STEPS[i - 1]}  "
                  f"[dim](+{time.perf_counter() - started:.0f}s)[/]")


@click.command()
@click.option("--dataset", default="ml-1m", show_default=True)
@click.option("--out", "out_dir", default="runs/demo", show_default=True,
              help="Where the bundle, results, plots and API docs go.")
@click.option("--clicks", default=8, show_default=True, help="Clicks to replay.")
@click.option("--trainer", type=click.Choice(["ray", "local"]), default="ray",
              show_default=True, help="Ray Train on the local Ray instance, or in-process.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a training setting (on top of the demo's small config).")
@click.option("--insecure-dev", is_flag=True,
              help="Serve without authentication (development only); without it the demo "
                   "makes an API key for itself.")
@click.option("--no-wait", is_flag=True,
              help="Stop after the replay; by default, in a terminal, the live page is "
                   "served until Ctrl-C.")
def demo(dataset: str, out_dir: str, clicks: int, trainer: str,
         overrides: tuple[str, ...], insecure_dev: bool, no_wait: bool) -> None:
    """The whole system end to end: data → Ray training → Kafka/Feast/Serve → live clicks."""
    import ray
    from ray import serve as ray_serve

    from ccrec.config import load
    from ccrec.data.prepare import prepare
    from ccrec.data.prepared import load_prepared
    from ccrec.models.cascade import CascadeConfig
    from ccrec.registry import Registry
    from demo.retrain import retrain
    from features.store import load_static_features
    from serve import runtime
    from streaming.local import LocalLoop

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    console.rule(f"CCRec demo on {dataset}")
    announce()

    _step(1, started)
    path = Path(prepare(dataset))
    prepared = load_prepared(path)
    console.print(f"      prepared → {path}")

    direct_port = runtime.apply_fast_path(runtime.free_port())  # before Ray starts
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    _quiet_libraries()
    try:
        _step(2, started)
        default = Path(__import__("ccrec").__file__).parent / "configs" / f"{path.name}.yaml"
        config = load(CascadeConfig, default if default.exists() else None,
                      [*DEMO_OVERRIDES, *overrides])
        if trainer == "ray":
            from ccrec.train.run import train_with_ray

            bundle = train_with_ray(path, config, out / "bundles", num_workers=1)
        else:
            import torch

            from ccrec.bundle import save_bundle
            from ccrec.train.cascade import train_cascade

            torch.set_num_threads(1)
            bundle = save_bundle(train_cascade(prepared, config).model, config,
                                 prepared.vocab, out / "bundles", dataset=path.name)
        registry = Registry(out / "bundles")
        registry.publish(bundle.name, dataset=path.name)
        console.print(f"      bundle → {bundle} (published: {registry.root / 'current'})")

        _step(3, started)
        results_md = _evaluate(bundle, prepared, config, out)
        console.print(f"      results → {results_md}")
        (out / "openapi.json").write_text(json.dumps(_openapi(), indent=2) + "\n")

        auth_env, headers = _auth(out, insecure_dev)

        _step(4, started)
        # a store of this run alone: the cycle and the online accuracy read its logs
        shutil.rmtree(out / "feast", ignore_errors=True)
        with LocalLoop(path, out / "feast") as loop:
            console.print(f"      broker {loop.bootstrap_servers}, Feast {loop.feast_root}")
            loaded = load_static_features(loop.store, prepared)
            console.print(f"      Feast: {loaded['user_profiles']:,} user profiles, the "
                          f"popularity of {loaded['categories']} categories")
            online = _online_accuracy(loop)  # joins its group while Serve starts
            _step(5, started)
            port = runtime.free_port()
            ray_serve.start(http_options={"host": "127.0.0.1", "port": port})
            # both stages follow the registry's current link: a publish rolls out
            runtime.deploy(runtime.serve_config(bundle=str(registry.root / "current"),
                                                features=loop.features,
                                                kafka=loop.bootstrap_servers, port=port,
                                                replicas=1, env=auth_env))
            url = f"http://127.0.0.1:{direct_port}"
            runtime.wait_ready(url)
            console.print(f"      serving on {url} (proxy http://127.0.0.1:{port})")
            if not online.assigned.wait(60):
                console.print("      [yellow]the online accuracy consumer has no partitions "
                              "yet: the first clicks may go unscored[/]")
            _step(6, started)
            user, item, replay_md = asyncio.run(_replay(url, headers, prepared, clicks, out))
            _step(7, started)
            ray_config = None
            if trainer == "ray":
                from ccrec.train.stage_runner import RayConfig

                ray_config = RayConfig(num_workers=1)
            retrain(loop, url, registry.root, path, ray_config=ray_config)
            console.print("      another user's clicks, answered by the model served now:")
            asyncio.run(_replay(url, headers, prepared, clicks, out, rank=1))
            _print_online_accuracy(online, out)
            page = f"{url}/?{urlencode({'user': user, 'item': item})}"
            console.print(f"      live page: [bold]{page}[/]")
            if not no_wait and sys.stdin.isatty():
                _serve_until_interrupted()
            _step(8, started)
            ray_serve.shutdown()
    finally:
        if ray.is_initialized():
            ray.shutdown()
    console.rule(f"done in {time.perf_counter() - started:.0f}s")
    click.echo(f"results table: {results_md}")
    click.echo(f"clicks, top {TOP_K}: {replay_md}, {out / 'replay-1.md'}")
    click.echo(f"plots:         {', '.join(str(p) for p in sorted(out.glob('*.png')))}")
    click.echo(f"API docs:      {out / 'openapi.json'} (and /docs while `ccrec serve run` runs)")
    click.echo(f"model bundles: {registry.root} (registry.json: every publish and "
               f"rejection; serving {registry.current})")


def _serve_until_interrupted() -> None:
    console.print("      serving the page until Ctrl-C (or run the demo with --no-wait)")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        console.print()


def _evaluate(bundle: Path, prepared, config, out: Path) -> Path:
    """The bundle and the popularity baselines on warm and cold test users."""
    from ccrec.baselines.popularity import LastCategory, Popularity
    from ccrec.bundle import Bundle
    from ccrec.metrics import evaluate_sums
    from ccrec.report import write_report
    from ccrec.train.cascade import build_tables

    tables = build_tables(prepared, config)
    model = Bundle.load(bundle).model
    pop, last = Popularity(prepared.num_categories), LastCategory(prepared.num_categories)
    pop.fit(tables["train"])
    last.fit(tables["train"])
    results = {group: {name: evaluate_sums(m, tables[split])
                       for name, m in (("Popularity", pop), ("Last-category", last),
                                       ("CCRec (demo config)", model))}
               for group, split in (("warm", "warm_test"), ("cold", "cold_test"))}
    write_report(results, out, f"{prepared.meta.get('name', 'demo')} (demo config)",
                 protocol=prepared.meta.get("protocol"))
    return out / "results.md"


def _auth(out: Path, insecure_dev: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The serving environment and the client's headers: no authentication, or a key with
    every scope made for this run (its hash in ``out/api_keys.yaml``)."""
    from serve.auth import INSECURE_ENV, KEYS_FILE_ENV, Scope, append_key, new_key

    if insecure_dev:
        console.print("      [yellow]authentication is OFF (--insecure-dev)[/]")
        return {INSECURE_ENV: "1"}, {}
    key, record = new_key("demo", list(Scope))
    keys_file = out / "api_keys.yaml"
    keys_file.unlink(missing_ok=True)
    append_key(keys_file, record)
    console.print(f"      API key for this run: {key}")
    return {KEYS_FILE_ENV: str(keys_file)}, {"authorization": f"Bearer {key}"}


def _openapi() -> dict:
    """The API's schema, from a host made for it alone (no broker: that its impression log
    is off is no news here)."""
    from features.reader import MemoryFeatures
    from serve.auth import Authenticator
    from serve.plain import PlainHost

    impressions = logging.getLogger("streaming.impressions")
    level = impressions.level
    impressions.setLevel(logging.ERROR)
    try:
        return PlainHost(None, MemoryFeatures(), auth=Authenticator()).app.openapi()
    finally:
        impressions.setLevel(level)


async def _replay(url: str, headers: dict[str, str], prepared, clicks: int,
                  out: Path, rank: int = 0) -> tuple[str, str, Path]:
    """One test user's real history, click by click, as a new user id; that id, the last
    item clicked and ``out/replay.md``. The user: the ``rank``-th longest history of the
    warm test users (``replay-<rank>.md`` from rank 1 on). The console gets the top 3
    and what changed per click (and the model version that answered); replay.md the
    full top k with scores."""
    import httpx

    from streaming.local import click_to_refresh

    vocab = prepared.vocab
    users = prepared.split("warm_test")
    row = sorted(users.itertuples(), key=lambda r: -len(r.past_categories))[rank]
    events = [(int(c), int(i)) for c, items in zip(row.past_categories, row.past_items,
                                                   strict=True) for i in list(items)[:1]]
    events = events[-clicks:]
    user = f"demo-{row.user}-{int(time.time())}"
    now = int(time.time())
    rows: list[tuple[str, str, dict, str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        first = (await client.post("/v1/recommendations",
                                   json={"user_id": user, "k": TOP_K})).json()
        rows.append(("–", f"({first['cold_start_strategy']})", first, ""))
        console.print(f"      before any click: {_top(first, SHOWN)}  "
                      f"(model {first['model_version']})")
        for n, (cat, item) in enumerate(events, 1):
            # ≥ 6 days apart: each click is its own category interaction (5-day rule)
            event = {"user_id": user, "item_id": vocab["items"][item],
                     "category_id": vocab["categories"][cat], "event_type": "click",
                     "timestamp": now - (len(events) - n + 1) * 6 * 86400}
            seconds, answer = await click_to_refresh(client, event, k=TOP_K)
            rows.append((str(n), vocab["categories"][cat], answer, f"{seconds * 1e3:.0f}"))
            console.print(f"      click {n}: {vocab['categories'][cat]:<12} → "
                          f"{_top(answer, SHOWN)}  ({seconds * 1e3:.0f} ms to refresh)")
    table = Table(title=f"user {user}: top {SHOWN} categories as the clicks arrive",
                  box=box.SIMPLE_HEAD)
    for column in ("click", "clicked", f"top {SHOWN}", "what changed", "ms"):
        table.add_column(column, overflow="fold")
    lines = [f"# {user}: top {TOP_K} categories as the clicks arrive\n",
             f"| click | clicked category | top {TOP_K} (score) | refresh ms |",
             "|---|---|---|---|"]
    previous = None
    for n, clicked, answer, ms in rows:
        table.add_row(n, clicked, ", ".join(_names(answer, SHOWN)), _changed(previous, answer),
                      ms)
        lines.append(f"| {n} | {clicked} | {_top(answer, TOP_K)} | {ms} |")
        previous = answer
    if rank == 0:
        Console(width=WIDTH).print(table)
    path = out / ("replay.md" if rank == 0 else f"replay-{rank}.md")
    path.write_text("\n".join(lines) + "\n")
    return user, vocab["items"][events[-1][1]], path


def _online_accuracy(loop):
    """The online accuracy consumer on the demo's broker: each new category interaction
    joined with the answer served before it (streaming/online_accuracy.py)."""
    from streaming.online_accuracy import JoinConfig, OnlineAccuracy, log_dir

    consumer = OnlineAccuracy(loop.settings, log_dir(loop.feast_root), JoinConfig(),
                              auto_offset_reset="earliest", max_poll_interval_ms=4000,
                              session_timeout_ms=4000, heartbeat_interval_ms=500)
    consumer.start()
    return consumer


def _print_online_accuracy(consumer, out: Path) -> None:
    """What `ccrec report online` prints: online accuracy per model version, and its plot."""
    from ccrec.online import format_table, load_log, online_plot, online_table

    time.sleep(1.0)  # the last click's join waits for impressions still on their way
    consumer.stop()
    rows = load_log(consumer.out_dir)
    if rows.empty:
        console.print("      online accuracy: no click joined with an answer yet")
        return
    console.print("      online accuracy per model version (each click's category against "
                  "the answer served just before it; 95 % bootstrap intervals):")
    click.echo(format_table(online_table(rows)))
    online_plot(rows, out / "online_accuracy.png")


def _names(answer: dict, k: int) -> list[str]:
    return [c["category_id"] for c in answer["categories"][:k]]


def _top(answer: dict, k: int) -> str:
    return ", ".join(f"{c['category_id']} ({c['score']:.2f})" for c in answer["categories"][:k])


def _changed(before: dict | None, after: dict) -> str:
    """The top ``SHOWN`` categories that came in (+) and went out (−), or 'reordered'."""
    if before is None:
        return ""
    old, new = _names(before, SHOWN), _names(after, SHOWN)
    moves = [f"+{c}" for c in new if c not in old] + [f"−{c}" for c in old if c not in new]
    return " ".join(moves) if moves else ("reordered" if old != new else "–")
