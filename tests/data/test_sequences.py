import numpy as np
import pandas as pd

from ccrec.data.sequences import (
    DAY,
    SequenceSpec,
    assign_category_interactions,
    past_sequences,
    retained,
)


def events(rows):
    return pd.DataFrame(rows, columns=["user", "item", "category", "timestamp"])


def anchors(rows, window=5 * DAY):
    e = events(rows)
    return assign_category_interactions(
        e["user"].to_numpy(), e["category"].to_numpy(), e["timestamp"].to_numpy(), window
    ).tolist()


def test_event_exactly_five_days_after_the_start_joins_the_interaction():
    assert anchors([(0, 1, 1, 0), (0, 2, 1, 5 * DAY)]) == [0, 0]


def test_event_one_second_past_the_window_opens_a_new_interaction():
    assert anchors([(0, 1, 1, 0), (0, 2, 1, 5 * DAY + 1)]) == [0, 1]


def test_window_is_anchored_at_the_first_event_not_the_previous_one():
    # 0, 3d, 6d: the 6-day event is within 5 days of the 3-day one but not of the start.
    assert anchors([(0, 1, 1, 0), (0, 2, 1, 3 * DAY), (0, 3, 1, 6 * DAY)]) == [0, 0, 2]


def test_interleaved_categories_group_separately_and_users_never_mix():
    rows = [(0, 1, 1, 0), (0, 2, 2, 10), (0, 3, 1, 20), (1, 4, 1, 30), (0, 5, 2, 40)]
    assert anchors(rows) == [0, 1, 0, 3, 1]


def test_same_timestamp_events_form_one_interaction_with_distinct_items():
    seq = past_sequences(events([(0, 7, 3, 100), (0, 8, 3, 100), (0, 7, 3, 100)]), SequenceSpec())
    assert seq.loc[0, "past_categories"].tolist() == [3]
    assert [list(x) for x in seq.loc[0, "past_items"]] == [[7, 8]]
    assert seq.loc[0, "num_past_events"] == 3


def test_past_sequence_keeps_last_k_in_time_order_with_item_sets():
    rows = [(0, 10 + c, c, c * 6 * DAY) for c in range(1, 8)]  # 7 CIs, 6 days apart
    rows += [(0, 99, 3, 3 * 6 * DAY + 60)]  # joins category 3's CI
    seq = past_sequences(events(rows), SequenceSpec(max_past=4))
    assert seq.loc[0, "past_categories"].tolist() == [4, 5, 6, 7]
    assert seq.loc[0, "num_past_cis"] == 7
    spec = SequenceSpec(max_past=10)
    full = past_sequences(events(rows), spec)
    assert [list(x) for x in full.loc[0, "past_items"]][2] == [13, 99]
    assert full.loc[0, "past_starts"].tolist() == [c * 6 * DAY for c in range(1, 8)]


def test_retention_drops_events_outside_the_horizon_and_over_the_cap():
    rows = [(0, 1, 1, 0), (0, 2, 2, 100 * DAY), (0, 3, 3, 101 * DAY), (0, 4, 4, 102 * DAY)]
    kept = retained(events(rows), SequenceSpec(horizon_days=50, max_events=2))
    assert kept["item"].tolist() == [3, 4]


def test_vectorised_grouping_matches_a_reference_loop():
    rng = np.random.default_rng(0)
    n = 3000
    rows = list(zip(rng.integers(0, 30, n), rng.integers(1, 50, n), rng.integers(1, 6, n),
                    rng.integers(0, 60 * DAY, n), strict=True))
    got = anchors(rows)
    expected = [-1] * n
    open_groups = {}
    for i in sorted(range(n), key=lambda i: (rows[i][0], rows[i][2], rows[i][3])):
        u, _, c, t = rows[i]
        start = open_groups.get((u, c))
        if start is None or t - rows[start][3] > 5 * DAY:
            open_groups[(u, c)] = start = i
        expected[i] = start
    # Equal-timestamp ties may anchor at either tied event; compare the anchor times.
    assert [rows[a][3] for a in got] == [rows[a][3] for a in expected]


def reference_past_sequence(rows, spec):
    """One user's features by the definitions, event by event (the oracle)."""
    rows = sorted(rows, key=lambda r: (r[3], r[2], r[1]))
    rows = [r for r in rows if r[3] >= rows[-1][3] - spec.horizon_seconds][-spec.max_events:]
    cis = []  # [category, start, items]
    for _, item, category, t in rows:
        same = [ci for ci in cis if ci[0] == category]
        if same and t - same[-1][1] <= spec.window_seconds:
            if item not in same[-1][2]:
                same[-1][2].append(item)
        else:
            cis.append([category, t, [item]])
    cis.sort(key=lambda ci: (ci[1], ci[0]))
    recent = cis[-spec.max_past:]
    return {"past_categories": [ci[0] for ci in recent], "past_starts": [ci[1] for ci in recent],
            "past_items": [ci[2] for ci in recent], "num_past_events": len(rows),
            "num_past_cis": len(cis), "num_past_categories": len({r[2] for r in rows}),
            "last_timestamp": rows[-1][3]}


def test_past_sequences_match_the_definitions_event_by_event():
    rng = np.random.default_rng(1)
    for trial in range(40):
        n = int(rng.integers(1, 300))
        # distinct timestamps per user: the reference's tie order is then the only order
        users = rng.integers(0, 12, n)
        times = rng.choice(int(rng.choice([3, 40, 400])) * DAY, n, replace=False)
        rows = list(zip(users.tolist(), rng.integers(0, 15, n).tolist(),
                        rng.integers(1, 5, n).tolist(), times.tolist(), strict=True))
        spec = SequenceSpec(max_past=int(rng.integers(1, 12)),
                            horizon_days=float(rng.choice([2, 30, 365])),
                            max_events=int(rng.choice([5, 40, 2000])))
        got = past_sequences(events(rows), spec)
        assert got["user"].tolist() == sorted(set(users.tolist()))
        for row in got.itertuples():
            expected = reference_past_sequence([r for r in rows if r[0] == row.user], spec)
            actual = {"past_categories": row.past_categories.tolist(),
                      "past_starts": row.past_starts.tolist(),
                      "past_items": [list(x) for x in row.past_items],
                      **{k: getattr(row, k) for k in ("num_past_events", "num_past_cis",
                                                       "num_past_categories", "last_timestamp")}}
            assert actual == expected, (trial, row.user)
