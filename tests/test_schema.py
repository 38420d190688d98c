import json
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from ccrec.schema import (
    FUTURE_TOLERANCE_S,
    SCHEMA_VERSION,
    TIMESTAMP_RANGE_ERROR,
    Event,
    EventValidationError,
    parse_event,
    validate_events_frame,
)


def test_valid_event_round_trips_json_and_normalises_to_utc():
    event = parse_event(
        '{"user_id": "u1", "item_id": "i9", "category_id": "Books", '
        '"event_type": "purchase", "timestamp": "2024-03-01T10:00:00"}'
    )
    assert event.timestamp == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert event.schema_version == SCHEMA_VERSION
    assert event.dedup_id == f"u1|i9|Books|{event.epoch_seconds}"
    assert Event.model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ('{"item_id": "i", "category_id": "c", "timestamp": 1}', "user_id"),
        ('{"user_id": "u", "item_id": "i", "category_id": "c", "timestamp": "yesterday"}',
         "timestamp"),
        ('{"user_id": "u", "item_id": 5, "category_id": "c", "timestamp": 1}', "item_id"),
        ('{"user_id": "", "item_id": "i", "category_id": "c", "timestamp": 1}', "user_id"),
        ('{"user_id": "u", "item_id": "i", "category_id": "c", "timestamp": 1, "x": 1}', "x"),
        ('{"user_id": "u", "item_id": "i", "category_id": "c", "timestamp": 1, '
         '"event_type": "teleport"}', "event_type"),
        ('{"user_id": "u", "item_id": "i", "category_id": "c", "timestamp": 1, '
         '"schema_version": 99}', "schema_version"),
    ],
)
def test_invalid_event_names_the_field(payload, field):
    with pytest.raises(EventValidationError) as info:
        parse_event(payload, source="topic")
    assert info.value.field == field
    assert field in str(info.value)


def test_malformed_json_is_a_validation_error():
    with pytest.raises(EventValidationError):
        parse_event(b"{not json")


NOW = 1_700_000_000  # 2023-11-14T22:13:20Z


def _with_timestamp(timestamp) -> str:
    return json.dumps({"user_id": "u", "item_id": "i", "category_id": "c",
                       "timestamp": timestamp})


@pytest.mark.parametrize("timestamp", [
    "1500-01-01T00:00:00Z",  # before pandas' datetime range
    "9999-12-31T23:59:59-23:59",  # in UTC: year 10000
    "0001-01-01T00:00:00+01:00",  # in UTC: year 0
    "1969-12-31T23:59:59Z", "1970-01-01T00:30:00+01:00", -1,  # just before 1970
    "2023-11-14T22:18:21Z", NOW + 301,  # just after now + 300 s
    2e10,  # epoch seconds in year 2603
])
def test_timestamps_outside_the_range_are_rejected_before_any_conversion(timestamp):
    with pytest.raises(EventValidationError) as info:
        parse_event(_with_timestamp(timestamp), now=NOW)
    assert (info.value.field, info.value.kind) == ("timestamp", TIMESTAMP_RANGE_ERROR)
    assert "outside the accepted range 1970-01-01T00:00:00+00:00" in str(info.value)


@pytest.mark.parametrize(("timestamp", "epoch"), [
    ("1970-01-01T00:00:00Z", 0), ("1970-01-01T01:00:00+01:00", 0), (0, 0),
    ("2023-11-14T22:18:20Z", NOW + 300), (NOW + 300, NOW + 300),
    ("2023-11-14T17:18:20-05:00", NOW + 300),
])
def test_the_range_ends_are_accepted(timestamp, epoch):
    assert FUTURE_TOLERANCE_S == 300
    assert parse_event(_with_timestamp(timestamp), now=NOW).epoch_seconds == epoch


def test_the_range_ends_at_the_clock_without_a_given_now():
    with pytest.raises(EventValidationError, match="outside the accepted range"):
        parse_event(_with_timestamp(time.time() + 3600))
    assert parse_event(_with_timestamp(int(time.time()))).epoch_seconds <= time.time()


def test_a_lone_surrogate_is_not_an_identifier():
    """JSON text (escaped) and a decoded dict (as an HTTP framework hands it over)."""
    event = {"user_id": "\ud800", "item_id": "i", "category_id": "c", "timestamp": 5}
    with pytest.raises(EventValidationError):
        parse_event(json.dumps(event))
    with pytest.raises(EventValidationError) as info:
        parse_event(event)
    assert info.value.field == "user_id"


def test_the_http_api_answers_422_for_the_same_range():
    """serve.api.ClickEvent is an Event: FastAPI turns its range error into a 422."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from serve.api import ClickEvent

    app = FastAPI()

    @app.post("/events")
    def accept(event: ClickEvent) -> dict:
        return {"epoch": event.epoch_seconds}

    client = TestClient(app, headers={"content-type": "application/json"})
    for timestamp in ("1500-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59",
                      "0001-01-01T00:00:00+01:00"):
        response = client.post("/events", content=_with_timestamp(timestamp))
        assert response.status_code == 422, timestamp
        assert response.json()["detail"][0]["type"] == TIMESTAMP_RANGE_ERROR
    assert client.post("/events", content=_with_timestamp(0)).json() == {"epoch": 0}


def frame(**overrides):
    base = {
        "user_id": ["u1", "u2", "u3"],
        "item_id": ["a", "b", "c"],
        "category_id": ["x", "y", "x"],
        "timestamp": ["2024-01-01", "2024-01-02T12:00:00Z", "1704067200"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_frame_validation_normalises_types():
    out = validate_events_frame(frame(), "events.csv")
    assert list(out["timestamp"]) == [1704067200, 1704196800, 1704067200]
    assert list(out["event_type"]) == ["click"] * 3


@pytest.mark.parametrize(
    ("overrides", "row", "field"),
    [
        ({"timestamp": ["2024-01-01", "not a date", "2024-01-03"]}, 1, "timestamp"),
        ({"item_id": ["a", "b", None]}, 2, "item_id"),
        ({"user_id": ["u1", "  ", "u3"]}, 1, "user_id"),
    ],
)
def test_frame_validation_names_file_row_and_field(overrides, row, field):
    with pytest.raises(EventValidationError) as info:
        validate_events_frame(frame(**overrides), "events.csv")
    error = info.value
    assert (error.source, error.row, error.field) == ("events.csv", row, field)
    assert f"row {row}" in str(error) and "events.csv" in str(error)


def test_frame_validation_rejects_missing_column_and_empty_frame():
    with pytest.raises(EventValidationError, match="missing column.*category_id"):
        validate_events_frame(frame().drop(columns=["category_id"]), "e.csv")
    with pytest.raises(EventValidationError, match="no events"):
        validate_events_frame(frame().iloc[:0], "e.csv")
