from datetime import UTC, datetime

import pandas as pd
import pytest

from ccrec.schema import (
    SCHEMA_VERSION,
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
