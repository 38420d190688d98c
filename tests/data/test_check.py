"""Bringing your own events: `ccrec data check` and what `ccrec data prepare` says.

The four-user file below is worked out by hand (T0 = 2023-11-14 22:13:20 UTC, a
global cutoff of 2023-11-25 00:00 UTC is day 10.07; horizon cis:1; 5-day CIs):

* u1: c1 day 0, c2 day 10, c3 day 20 → past and a new CI after the cutoff: kept by both rules;
* u2: c1 days 1 and 0 (rows out of order) → one CI, all before the cutoff: no future
  (global), one boundary so the per-user cutoff is its first moment: no past (per user);
* u3: c2 day 12, c1 day 25 → nothing before the global cutoff: no past; per user, the
  cutoff is day 25: kept;
* u4: c1 days 0, 8, 12 (day 12 twice) → the day-12 events continue the CI that began on
  day 8, before the cutoff, so nothing *new* starts after it: no future (global); per user
  the cutoff is day 8: kept.
"""

import json

import pytest
from click.testing import CliRunner

from ccrec.cli import cli
from ccrec.data.adapters import load_events_file
from ccrec.data.check import check_events, problems, report_text
from ccrec.data.prepare import PrepareConfig, PrepareError, prepare

T0, DAY = 1_700_000_000, 86_400
CONFIG = PrepareConfig(cutoff_mode="global", cutoff="2023-11-25", future="cis:1")
ROWS = [("u1", "i1", "c1", 0), ("u1", "i2", "c2", 10), ("u1", "i3", "c3", 20),
        ("u2", "i1", "c1", 1), ("u2", "i1", "c1", 0),
        ("u3", "i9", "c2", 12), ("u3", "i9", "c1", 25),
        ("u4", "i4", "c1", 0), ("u4", "i5", "c1", 8), ("u4", "i6", "c1", 12),
        ("u4", "i6", "c1", 12)]


def write(path, rows):
    path.write_text("user_id,item_id,category_id,timestamp\n" + "".join(
        f"{u},{i},{c},{T0 + d * DAY}\n" for u, i, c, d in rows))
    return path


def test_check_counts_users_per_cutoff_rule_and_names_the_problems(tmp_path):
    raw = load_events_file(write(tmp_path / "four.csv", ROWS))
    report = check_events(raw, CONFIG)
    assert (report["rows"], report["users"], report["items"], report["categories"]) == (
        11, 4, 7, 3)
    assert report["events_per_user"] == {"min": 2, "median": 2.5, "mean": 2.8, "max": 4,
                                         "users_with_one_event": 0}
    assert report["time_span"] == {"first": "2023-11-14 22:13", "last": "2023-12-09 22:13",
                                   "days": 25.0}
    rules = report["cutoff_rules"]
    assert {k: rules["global"][k] for k in ("users", "kept", "no_past", "no_future")} == {
        "users": 4, "kept": 1, "no_past": 1, "no_future": 2}
    assert {k: rules["per_user"][k] for k in ("users", "kept", "no_past", "no_future")} == {
        "users": 4, "kept": 3, "no_past": 1, "no_future": 0}
    assert rules["global"]["rule"] == "global cutoff 2023-11-25 00:00"
    assert report["advice"] == (
        "only 1 of 4 users (25%) have both a past and a future with the global cutoff "
        "2023-11-25 00:00 and horizon cis:1; --cutoff-mode per_user keeps 3 (75%)")
    found = report["problems"]
    assert len(found) == 3
    assert found[0].startswith("1 duplicate rows repeat an earlier row exactly (rows 10)")
    assert found[1].startswith("time is not sorted: 1 rows are earlier than the user's "
                               "previous row (first at row 4)")
    assert found[2].startswith("1 items are in more than one category (e.g. i9: c2, c1)")
    text = report_text("events:four.csv", report)
    assert max(map(len, text.splitlines())) <= 100
    assert "  global    1 of 4 (25%)  ← chosen" in text


def test_a_clean_file_has_no_problems(tmp_path):
    raw = load_events_file(write(tmp_path / "clean.csv", [r for n, r in enumerate(ROWS)
                                                            if n not in (4, 6, 10)]))
    assert problems(raw.events) == []


def many(path, kept=10, stale=30):
    """``kept`` users with a new CI after the cutoff (days 0, 10, 20), ``stale`` users
    whose two CIs (days 0 and 6) are both before it."""
    rows = [(f"k{u}", f"i{d}", f"c{n + 1}", d) for u in range(kept)
            for n, d in enumerate((0, 10, 20))]
    rows += [(f"s{u}", f"j{d}", f"c{n + 1}", d) for u in range(stale)
             for n, d in enumerate((0, 6))]
    return write(path, rows)


def test_prepare_says_who_was_dropped_and_warns_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("CCREC_HOME", str(tmp_path / "home"))
    path = many(tmp_path / "stale.csv")
    result = CliRunner().invoke(cli, [
        "data", "prepare", "--dataset", f"events:{path}", "--cutoff", "2023-11-25",
        "--future", "cis:1", "--set", "test_fraction=0", "--set", "valid_fraction=0"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert ("kept 10 of 40 users with the global cutoff 2023-11-25 00:00 and horizon cis:1; "
            "dropped 30 without a category in the horizon after it") in out
    assert ("warning: only 10 of 40 users (25%) have both a past and a future with the global "
            "cutoff 2023-11-25 00:00 and horizon cis:1; --cutoff-mode per_user keeps 40 "
            "(100%)") in out
    meta = json.loads((tmp_path / "home" / "prepared" / "events-stale-cis1" / "meta.json")
                      .read_text())
    assert meta["users_kept"]["kept"] == 10 and meta["split_users"]["train"] == 10


def test_prepare_refuses_an_empty_split_with_the_cause_and_the_fix(tmp_path):
    with pytest.raises(PrepareError) as info:
        prepare(f"events:{write(tmp_path / 'four.csv', ROWS)}", CONFIG,
                out_dir=tmp_path / "never")
    message = str(info.value)
    assert "split would be empty with the global cutoff 2023-11-25 00:00 and horizon cis:1" \
        in message
    assert "only 1 of 4 users qualify (1 have no event before their cutoff; 2 have no " \
        "category in the horizon (cis:1) at or after it)" in message
    assert message.endswith("Fix: --cutoff-mode per_user keeps 3 users")
    assert not (tmp_path / "never").exists()


def test_data_check_command_prints_the_report_and_json(tmp_path):
    path = write(tmp_path / "four.csv", ROWS)
    args = ["data", "check", "--dataset", f"events:{path}", "--cutoff", "2023-11-25",
            "--future", "cis:1"]
    text = CliRunner().invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "per_user  3 of 4 (75%)" in text.output
    assert "--cutoff-mode per_user keeps 3 (75%)" in " ".join(text.output.split())
    as_json = CliRunner().invoke(cli, [*args, "--cutoff-mode", "per_user", "--json"])
    report = json.loads(as_json.output)
    assert report["cutoff_mode"] == "per_user" and report["advice"] is None
