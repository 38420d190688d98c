"""The performance goals against the figures in benchmarks/results/*.json, as a markdown table.

Each row names its goal, the measured figure, whether it is met and the
load average of the machine in that run. A benchmark whose file is missing
reads "not measured"; ``gpu_check.json`` is absent where no GPU was at hand.

Usage: ``python -m benchmarks.goals [--write docs/performance.md]`` (with
``--write``: the table replaces the part of that file between the
``<!-- goals:start -->`` and ``<!-- goals:end -->`` lines).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
START, END = "<!-- goals:start -->", "<!-- goals:end -->"


def read(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    # a curated file keeps several runs, the current one first
    return data["runs"][0] if isinstance(data.get("runs"), list) and data["runs"] else data


def dig(data: dict | None, *keys: str):
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def load_of(data: dict | None) -> str:
    """The run's 1-minute load average (start–end where both are known) and its date."""
    when = str(data.get("when") or dig(data, "machine", "when") or "")[:10] if data else ""
    return f"{_load(data)} ({when})" if when else _load(data)


def _load(data: dict | None) -> str:
    loads = dig(data, "load_avg_1_5_15")  # (1, 5, 15 min) at the start and at the end
    if loads:
        end = dig(data, "load_avg_1_5_15_end")
        return f"{loads[0]:.1f}" + (f"–{end[0]:.1f}" if end else "")
    for keys in (("load_average_1min",), ("load_average_1m",), ("machine", "load_avg_1m"),
                 ("machine", "load_avg_1m_start")):
        value = dig(data, *keys)
        if value is not None:
            end = dig(data, "machine", "load_avg_1m_end") if keys[-1].endswith("start") else None
            return f"{value}" + (f"–{end}" if end is not None else "")
    return "?"


def cascade_row(speed: dict | None) -> tuple[object, bool | None]:
    """The cascade's seconds, judged only where the run recorded its task's size (runs
    before rolling-origin examples did not, and trained on a tenth of the examples)."""
    seconds, examples = dig(speed, "cascade_seconds_ml1m"), dig(speed, "examples", "m1")
    if seconds is None:
        return None, None
    if examples is None:
        return f"{seconds} (an earlier, smaller task)", None
    threads = dig(speed, "threads")
    on = f", {threads} torch thread{'s' if threads != 1 else ''}" if threads else ""
    return f"{seconds} ({examples:,} M1 examples per epoch{on})", seconds <= 600.0


def rows() -> list[tuple[str, str, str, str, str]]:
    speed, scaling, serve = read("train_speed"), read("train_scaling"), read("serve")
    stream, elastic, gpu = read("stream"), read("elastic"), read("gpu_check")
    c1, c8 = dig(serve, "concurrency", "1") or {}, dig(serve, "concurrency", "8") or {}
    hc = dig(stream, "high_cardinality") or {}

    def at_most(value, goal):
        return value, None if value is None else value <= goal

    def at_least(value, goal):
        return value, None if value is None else value >= goal

    qps_ratio = (round(c8["serve_qps"] / c8["plain_qps"], 2)
                 if c8.get("serve_qps") and c8.get("plain_qps") else None)
    rates = {w: dig(scaling, "examples_per_s", w) for w in ("1", "2")}
    rate_text = ("; ".join(f"{w} worker(s): " + ", ".join(f"{s} {v:,.0f}" for s, v in r.items())
                           for w, r in rates.items() if r) or None)
    replicas = dig(elastic, "serve_replicas") or {}
    table: list[tuple[str, str, tuple[object, bool | None], dict | None]] = [
        ("1", "one-user inference p50 ≤ 1 ms", at_most(dig(speed, "inference_ms_p50"), 1.0),
         speed),
        ("1", "one-user inference p99 ≤ 2 ms", at_most(dig(speed, "inference_ms_p99"), 2.0),
         speed),
        ("2", "Serve / one process p99 ratio at c=1 ≤ 2.0",
         at_most(dig(serve, "p99_ratio_c1"), 2.0), serve),
        ("2", "Serve p50 ≤ 8 ms at c=1", at_most(c1.get("serve_p50_ms"), 8.0), serve),
        ("2", "Serve p99 ≤ 20 ms at c=1", at_most(c1.get("serve_p99_ms"), 20.0), serve),
        ("2", "Serve QPS at c=8 ≥ 0.8× one process", at_least(qps_ratio, 0.8), serve),
        ("3", "stream, ≥ 50,000 users: ≥ 10,000 events/s into Redis",
         at_least(dig(hc, "redis", "events_per_s"), 10_000), stream),
        ("3", "stream, ≥ 50,000 users: ≥ 5,000 events/s into SQLite",
         at_least(dig(hc, "sqlite", "events_per_s"), 5_000), stream),
        ("3", "freshness p99 ≤ 100 ms at 1,000 events/s",
         at_most(dig(stream, "freshness_ms", "p99"), 100.0), stream),
        ("4", "click → refreshed recommendation p99 ≤ 100 ms",
         at_most(dig(serve, "click_to_refresh_ms", "p99"), 100.0), serve),
        ("5", "ML-1M cascade trains in ≤ 600 s (rolling-origin examples)",
         cascade_row(speed), speed),
        ("5", "examples/s per stage at 1 and 2 Ray workers (reported)",
         (rate_text, None if rate_text is None else True), scaling),
        ("6", "one epoch of each stage on CUDA (benchmarks/gpu_check.py)",
         (dig(gpu, "examples_per_s") or "not run (no GPU machine)", None if gpu is None
          else True), gpu),
        ("7", "elastic run grows to a joining node",
         (dig(elastic, "grew"), dig(elastic, "grew")), elastic),
        ("7", "node removed mid-epoch: recovered from its checkpoint (epochs lost)",
         (None if elastic is None else
          f"{elastic.get('node_loss_recovered')} ({elastic.get('epochs_lost')} lost)",
          dig(elastic, "node_loss_recovered")), elastic),
        ("7", "Serve adds replicas under a load ramp and removes them",
         (None if not replicas else
          f"{replicas.get('at_rest')} → {replicas.get('max')} → {replicas.get('after')}",
          None if not replicas else bool(replicas.get("scaled_up")
                                         and replicas.get("scaled_down"))), elastic),
    ]
    out = []
    for item, goal, (value, met), source in table:
        shown = "not measured" if value is None else (
            json.dumps(value) if isinstance(value, dict) else str(value))
        verdict = {True: "met", False: "**not met**", None: "—"}[met]
        out.append((item, goal, shown, verdict, "—" if source is None else load_of(source)))
    return out


def markdown() -> str:
    lines = ["| # | goal | measured | | load average (date) |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    table = markdown()
    if args.write is None:
        sys.stdout.write(table)
        return
    text = args.write.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    if not rest:
        raise SystemExit(f"{args.write} has no {START} line")
    args.write.write_text(f"{head}{START}\n{table}{END}{tail}")


if __name__ == "__main__":
    main()
