"""``ccrec data check``: what an events table holds, what is wrong with it, and which
users each cutoff rule keeps, before anything is prepared or trained.

Problems named: rows that repeat an earlier row exactly, events out of time
order within a user, and items listed under more than one category. None of
them stops preparation (it sorts by time and takes each event's own category),
but each changes what is learned, so the check says so.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace

import numpy as np
import pandas as pd

from ccrec.data.adapters import RawData
from ccrec.data.cutoff import advice, alternatives, qualification
from ccrec.data.horizon import category_interactions
from ccrec.data.prepare import PrepareConfig

#: Examples shown per problem.
EXAMPLES = 3
#: Columns of the text report.
WIDTH = 100


def _coded(events: pd.DataFrame) -> pd.DataFrame:
    """Integer user/item/category codes (any order: the check needs no vocabulary)."""
    return pd.DataFrame({
        "user": pd.factorize(events["user_id"])[0].astype(np.int64),
        "item": pd.factorize(events["item_id"])[0].astype(np.int64) + 1,
        "category": pd.factorize(events["category_id"])[0].astype(np.int64) + 1,
        "timestamp": events["timestamp"].to_numpy(np.int64),
    })


def problems(events: pd.DataFrame) -> list[str]:
    """The problems of an events table in file order, each in one sentence (rows 0-based,
    header excluded, as in validation errors)."""
    found = []
    columns = [c for c in ("user_id", "item_id", "category_id", "event_type", "timestamp",
                           "event_id") if c in events.columns]
    repeated = events.duplicated(columns, keep="first").to_numpy()
    if repeated.any():
        rows = np.flatnonzero(repeated)
        found.append(f"{len(rows):,} duplicate rows repeat an earlier row exactly (rows "
                     f"{', '.join(map(str, rows[:EXAMPLES]))}{'…' if len(rows) > EXAMPLES else ''}"
                     "); drop them, or give each event its own event_id")
    previous = events.groupby("user_id", sort=False)["timestamp"].shift()
    late = (events["timestamp"] < previous).to_numpy()
    if late.any():
        rows = np.flatnonzero(late)
        found.append(f"time is not sorted: {len(rows):,} rows are earlier than the user's "
                     f"previous row (first at row {rows[0]}); preparation sorts by time, but a "
                     "replay of the file in row order would send them late")
    per_item = events.groupby("item_id")["category_id"].unique()
    mixed = per_item[per_item.map(len) > 1]
    if len(mixed):
        shown = "; ".join(f"{item}: {', '.join(map(str, cats[:4]))}"
                          for item, cats in mixed.head(EXAMPLES).items())
        found.append(f"{len(mixed):,} items are in more than one category (e.g. {shown}); "
                     "each event counts in its own row's category")
    return found


def check_events(raw: RawData, config: PrepareConfig) -> dict:
    """The report of ``ccrec data check`` (see the module docstring), JSON-ready."""
    events = raw.events
    coded = _coded(events)
    cis = category_interactions(coded, config.sequence.window_seconds)
    per_user = coded.groupby("user").size()
    first, last = int(coded["timestamp"].min()), int(coded["timestamp"].max())
    rules = {}
    for mode in ("global", "per_user"):
        rule = replace(config, cutoff_mode=mode)
        rules[mode] = qualification(coded, cis, rule, config.horizon)
    current = rules[config.cutoff_mode]
    options = alternatives(coded, cis, config) if current.share < 0.5 else []
    return {
        "rows": len(events),
        "users": int(coded["user"].nunique()),
        "items": int(coded["item"].nunique()),
        "categories": int(coded["category"].nunique()),
        "event_types": {str(k): int(v) for k, v in events["event_type"].value_counts().items()},
        "time_span": {"first": _iso(first), "last": _iso(last),
                      "days": round((last - first) / 86_400, 1)},
        "events_per_user": {"min": int(per_user.min()), "median": float(per_user.median()),
                            "mean": round(float(per_user.mean()), 1),
                            "max": int(per_user.max()),
                            "users_with_one_event": int((per_user == 1).sum())},
        "category_interactions_per_user": float(cis.groupby("user").size().median()),
        "horizon": str(config.horizon),
        "cutoff_mode": config.cutoff_mode,
        "cutoff_rules": {mode: q.to_dict() for mode, q in rules.items()},
        "problems": problems(events),
        "advice": advice(current, options),
    }


def _iso(seconds: int) -> str:
    return f"{pd.Timestamp(seconds, unit='s', tz='UTC'):%Y-%m-%d %H:%M}"


def report_text(name: str, report: dict) -> str:
    """The report as lines of at most 100 columns."""
    per = report["events_per_user"]
    span = report["time_span"]
    types = ", ".join(f"{k} {v:,}" for k, v in report["event_types"].items())
    lines = [
        f"{name}",
        f"  rows         {report['rows']:,} ({types})",
        f"  users        {report['users']:,}   items {report['items']:,}   "
        f"categories {report['categories']:,}",
        f"  time span    {span['first']} → {span['last']} ({span['days']:g} days)",
        f"  events/user  min {per['min']}, median {per['median']:g}, mean {per['mean']:g}, "
        f"max {per['max']}; {per['users_with_one_event']} users have one event",
        f"  category interactions/user  median {report['category_interactions_per_user']:g}",
        f"users each cutoff rule keeps with horizon {report['horizon']}",
        "  (a user needs an event before the cutoff and a category in the horizon after it)",
    ]
    for mode, q in report["cutoff_rules"].items():
        chosen = "  ← chosen" if mode == report["cutoff_mode"] else ""
        lines.append(f"  {mode:<9} {q['kept']:,} of {q['users']:,} "
                     f"({q['kept'] / max(q['users'], 1):.0%}){chosen}")
        lines.append(f"            {q['rule']}")
        dropped = [f"{q['no_past']:,} no event before the cutoff"] if q["no_past"] else []
        if q["no_future"]:
            dropped.append(f"{q['no_future']:,} nothing in the horizon after it")
        if dropped:
            lines.append(f"            dropped: {'; '.join(dropped)}")
    lines.append("problems:" if report["problems"] else "problems: none found")
    lines += [textwrap.fill(p, WIDTH, initial_indent="  - ", subsequent_indent="    ")
              for p in report["problems"]]
    if report["advice"]:
        lines.append(textwrap.fill(f"warning: {report['advice']}", WIDTH,
                                   subsequent_indent="  "))
    return "\n".join(lines)
