"""The one interaction-event schema used by batch files, Kafka messages and HTTP.

A single typed record, :class:`Event`, validates one event (Kafka, HTTP).  Whole
files are validated column-wise by :func:`validate_events_frame`, which checks
the same fields with the same rules but vectorised, and names the offending
file, row and field in its error.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

#: Version of the wire format; bumped on any incompatible change of :class:`Event`.
SCHEMA_VERSION = 1

#: Columns every events table has (the required fields of :class:`Event`).
REQUIRED_COLUMNS = ("user_id", "item_id", "category_id", "event_type", "timestamp")
#: Columns an events table may have.
OPTIONAL_COLUMNS = ("event_id",)
#: Longest identifier accepted; longer ones are almost certainly garbage.
MAX_ID_LENGTH = 256

#: The accepted event times: from the Unix epoch to the receiver's clock plus a tolerance
#: for clock skew. The HTTP API and the stream worker check this one range.
EARLIEST_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE_S = 300.0
#: The pydantic error type of a timestamp outside the range.
TIMESTAMP_RANGE_ERROR = "timestamp_range"


# pydantic rejects strings that are not valid Unicode (a lone surrogate such as "\ud800").
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]


@functools.lru_cache(maxsize=4)  # a stream batch validates all its events against one now
def _latest(now: float) -> datetime:
    return EARLIEST_TIMESTAMP + timedelta(seconds=now + FUTURE_TOLERANCE_S)


def check_timestamp_range(value: datetime, now: float | None = None) -> datetime:
    """``value`` (naive = UTC) if it lies in EARLIEST_TIMESTAMP … now + FUTURE_TOLERANCE_S.

    Compares without converting ``value`` (a conversion to UTC or to epoch
    seconds overflows near the ends of the datetime range).

    Raises:
        PydanticCustomError: of type :data:`TIMESTAMP_RANGE_ERROR`, naming the range.
    """
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    latest = _latest(time.time() if now is None else now)
    # Aware datetimes compare through a timedelta, which cannot overflow.
    if not EARLIEST_TIMESTAMP <= aware <= latest:
        raise PydanticCustomError(
            TIMESTAMP_RANGE_ERROR,
            "timestamp {value} is outside the accepted range {earliest} … {latest} "
            "(now + {tolerance} s)",
            {"value": value.isoformat(), "earliest": EARLIEST_TIMESTAMP.isoformat(),
             "latest": latest.isoformat(timespec="seconds"),
             "tolerance": f"{FUTURE_TOLERANCE_S:g}"})
    return aware


class EventType(StrEnum):
    """What the user did with the item. All types count as an interaction."""

    VIEW = "view"
    CLICK = "click"
    CART = "cart"
    PURCHASE = "purchase"
    RATING = "rating"


class EventValidationError(ValueError):
    """An event or an events file breaks the schema.

    Args:
        message: what is wrong, naming the field.
        source: the file (or stream) the event came from, if any.
        row: the 0-based data row (header excluded), if known.
        field: the offending field, if known.
        kind: the pydantic error type (e.g. :data:`TIMESTAMP_RANGE_ERROR`), if known.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        field: str | None = None,
        kind: str | None = None,
    ) -> None:
        self.source, self.row, self.field, self.kind = source, row, field, kind
        where = []
        if source is not None:
            where.append(f"file {source}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class Event(BaseModel):
    """One user-item interaction.

    Args:
        user_id: the user's identifier in the source system.
        item_id: the item's identifier.
        category_id: the item's category (the unit CCRec recommends).
        event_type: what happened (view, click, cart, purchase, rating).
        timestamp: when it happened; naive datetimes are taken as UTC.
        event_id: a unique id for de-duplication; derived when absent.
        user_features: optional demographic features (f_t), name → value.
        schema_version: the wire-format version the producer used.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    user_id: Identifier
    item_id: Identifier
    category_id: Identifier
    event_type: EventType = EventType.CLICK
    timestamp: datetime = Field(description=(
        "ISO 8601 date-time (naive = UTC) or epoch seconds, from "
        f"{EARLIEST_TIMESTAMP.isoformat()} to the receiver's clock + {FUTURE_TOLERANCE_S:g} s."))
    event_id: Identifier | None = None
    user_features: dict[Identifier, Identifier] | None = None
    schema_version: int = SCHEMA_VERSION

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime, info: ValidationInfo) -> datetime:
        """In range (checked first: the conversion overflows outside it), then in UTC.

        The validation context's ``now`` (epoch s) replaces the clock, for replays and tests.
        """
        now = info.context.get("now") if info.context else None
        return check_timestamp_range(value, now).astimezone(UTC)

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise ValueError(f"schema_version {value} is newer than supported ({SCHEMA_VERSION})")
        return value

    @property
    def epoch_seconds(self) -> int:
        return int(self.timestamp.timestamp())

    @property
    def dedup_id(self) -> str:
        """The event id, or one derived from its content when the producer sent none."""
        if self.event_id:
            return self.event_id
        return f"{self.user_id}|{self.item_id}|{self.category_id}|{self.epoch_seconds}"


def parse_event(
    payload: bytes | str | dict[str, Any], *, source: str | None = None, now: float | None = None
) -> Event:
    """Validate one JSON event; raise :class:`EventValidationError` naming the field.

    ``now`` (epoch s, default the clock) is the end of the accepted time range.
    """
    from pydantic import ValidationError

    context = None if now is None else {"now": now}
    try:
        if isinstance(payload, dict):
            return Event.model_validate(payload, context=context)
        return Event.model_validate_json(payload, context=context)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or None
        raise EventValidationError(first.get("msg", str(exc)), source=source, field=field,
                                   kind=first.get("type")) from exc


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def validate_events_frame(frame: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """Validate and normalise an events table, vectorised.

    Returns a frame with the :data:`REQUIRED_COLUMNS` (ids as strings, the
    timestamp as int64 epoch seconds, UTC) plus ``event_id`` when present.
    Raises :class:`EventValidationError` at the first offending row.
    """
    src = str(source)
    if frame.empty:
        raise EventValidationError("the file holds no events", source=src)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if "event_type" in missing:  # the one field with a default
        frame = frame.assign(event_type=EventType.CLICK.value)
        missing.remove("event_type")
    if missing:
        raise EventValidationError(
            f"missing column(s) {missing}; have {list(frame.columns)}", source=src, field=missing[0]
        )
    out = pd.DataFrame(index=frame.index)
    for column in ("user_id", "item_id", "category_id") + tuple(
        c for c in OPTIONAL_COLUMNS if c in frame.columns
    ):
        values = frame[column]
        bad = values.isna().to_numpy()
        as_text = values.astype("string").str.strip()
        bad |= (as_text.str.len().fillna(0) == 0).to_numpy()
        bad |= (as_text.str.len().fillna(0) > MAX_ID_LENGTH).to_numpy()
        if bad.any():
            row = _first_bad(bad)
            raise EventValidationError(
                f"empty or over-long identifier {values.iloc[row]!r}", source=src, row=row,
                field=column,
            )
        out[column] = as_text.astype(str).to_numpy()
    types = frame["event_type"].astype("string").str.lower()
    bad = ~types.isin([t.value for t in EventType]).fillna(False).to_numpy()
    if bad.any():
        row = _first_bad(bad)
        raise EventValidationError(
            f"unknown event_type {frame['event_type'].iloc[row]!r}; "
            f"expected one of {[t.value for t in EventType]}",
            source=src, row=row, field="event_type",
        )
    out["event_type"] = types.astype(str).to_numpy()
    out["timestamp"] = _epoch_seconds(frame["timestamp"], src)
    return out.reset_index(drop=True)


def _epoch_seconds(values: pd.Series, source: str) -> np.ndarray:
    """Parse numbers (epoch seconds) or date strings/datetimes into int64 epoch seconds."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
    elif pd.api.types.is_numeric_dtype(values):
        numeric = pd.to_numeric(values, errors="coerce")
        parsed = pd.to_datetime(numeric, unit="s", utc=True, errors="coerce")
    else:
        text = values.astype("string")
        numeric = pd.to_numeric(text, errors="coerce")
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="mixed")
        from_numbers = pd.to_datetime(numeric, unit="s", utc=True, errors="coerce")
        parsed = parsed.where(numeric.isna(), from_numbers)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = _first_bad(bad)
        raise EventValidationError(
            f"unparsable timestamp {values.iloc[row]!r}", source=source, row=row, field="timestamp"
        )
    return (parsed.astype("int64") // 10**9).to_numpy()
