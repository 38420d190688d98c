"""CCRec's Feast definitions, in dependency order: entity → sources → feature views → services.

The feature names are module constants: ``streaming/``, ``serve/`` and the
tests import them from here, so no name is typed twice. The sequence features
keep the column names of :func:`ccrec.data.sequences.past_sequences`, the batch
computation they come from.

Push sources are sources, so they come right after their parquet batch
sources (a feature view must name the push source it is fed by). Every push
also appends the same rows to the parquet batch source (a directory of part
files), so the offline store keeps every update for point-in-time training.
All paths are relative to the store's root (``features/`` for the ``feast``
CLI, the directory given to :func:`features.store.open_store`).
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Array, Bytes, Int64

# ---- names shared with streaming/ and serve/ --------------------------------------------
USER_ID = "user_id"
SCOPE = "scope"
GLOBAL_SCOPE = "all"  # the one scope value: popularity over all users
EVENT_TIMESTAMP = "event_timestamp"
CREATED = "created"
# user_category_sequence: the features (paper δ_t, last k CIs, oldest first)
PAST_CATEGORIES = "past_categories"
PAST_STARTS = "past_starts"
PAST_ITEMS_FLAT = "past_items_flat"  # the CIs' item sets, concatenated
PAST_ITEM_COUNTS = "past_item_counts"  # the size of each CI's item set
PAST_ITEMS = "past_items"  # the item sets, one list per CI, as features.store reads them
NUM_PAST_EVENTS = "num_past_events"
NUM_PAST_CIS = "num_past_cis"
NUM_PAST_CATEGORIES = "num_past_categories"
LAST_TIMESTAMP = "last_timestamp"
# user_category_sequence: the streaming worker's state (retained events, applied Kafka
# position, recent event ids), written in the same row as one value (streaming.state)
WORKER_STATE = "worker_state"
# user_profile
USER_FEATURES = "user_features"
# category_popularity
POPULAR_CATEGORIES = "popular_categories"
POPULAR_COUNTS = "popular_counts"

# ---- entity ------------------------------------------------------------------------------

# A user, keyed by the external user id (new users need no vocabulary entry).
user = Entity(name="user", join_keys=[USER_ID], value_type=ValueType.STRING,
              description="A user, by the source system's user id")

# The population a statistic is computed over (GLOBAL_SCOPE: all users); keys
# category popularity, which belongs to no user.
scope = Entity(name="scope", join_keys=[SCOPE], value_type=ValueType.STRING,
               description="The population a statistic covers")

# ---- sources -----------------------------------------------------------------------------

# Offline log of every pushed user_category_sequence row (parquet part files).
user_category_sequence_log = FileSource(
    name="user_category_sequence_log",
    path="data/offline/user_category_sequence",
    timestamp_field=EVENT_TIMESTAMP,
    created_timestamp_column=CREATED,
)

# The streaming worker pushes each micro-batch's touched users here.
user_category_sequence_push = PushSource(
    name="user_category_sequence_push", batch_source=user_category_sequence_log
)

# Offline log of user profiles (f_t indices).
user_profile_log = FileSource(
    name="user_profile_log",
    path="data/offline/user_profile",
    timestamp_field=EVENT_TIMESTAMP,
    created_timestamp_column=CREATED,
)

# Profiles from a prepared data set (``ccrec features apply --dataset``).
user_profile_push = PushSource(name="user_profile_push", batch_source=user_profile_log)

# Offline log of category popularity snapshots.
category_popularity_log = FileSource(
    name="category_popularity_log",
    path="data/offline/category_popularity",
    timestamp_field=EVENT_TIMESTAMP,
    created_timestamp_column=CREATED,
)

# Popularity snapshots (cold start), computed from a data set's events.
category_popularity_push = PushSource(
    name="category_popularity_push", batch_source=category_popularity_log
)

# ---- feature views -----------------------------------------------------------------------

# The user's past category interactions (features) and the retained events they are
# computed from (the worker's state): one row, so one push writes both at once.
user_category_sequence = FeatureView(
    name="user_category_sequence",
    entities=[user],
    ttl=timedelta(0),
    schema=[
        Field(name=PAST_CATEGORIES, dtype=Array(Int64)),
        Field(name=PAST_STARTS, dtype=Array(Int64)),
        Field(name=PAST_ITEMS_FLAT, dtype=Array(Int64)),
        Field(name=PAST_ITEM_COUNTS, dtype=Array(Int64)),
        Field(name=NUM_PAST_EVENTS, dtype=Int64),
        Field(name=NUM_PAST_CIS, dtype=Int64),
        Field(name=NUM_PAST_CATEGORIES, dtype=Int64),
        Field(name=LAST_TIMESTAMP, dtype=Int64),
        Field(name=WORKER_STATE, dtype=Bytes),
    ],
    source=user_category_sequence_push,
    online=True,
)

# The user's demographic features f_t (vocabulary indices, 0 = unknown).
user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(0),
    schema=[Field(name=USER_FEATURES, dtype=Array(Int64))],
    source=user_profile_push,
    online=True,
)

# Categories by number of events, most popular first (cold-start candidates).
category_popularity = FeatureView(
    name="category_popularity",
    entities=[scope],
    ttl=timedelta(0),
    schema=[
        Field(name=POPULAR_CATEGORIES, dtype=Array(Int64)),
        Field(name=POPULAR_COUNTS, dtype=Array(Int64)),
    ],
    source=category_popularity_push,
    online=True,
)

# ---- feature services --------------------------------------------------------------------

# What model version 1 reads online: the sequence features (not the worker state),
# the profile and popularity.
ccrec_v1 = FeatureService(
    name="ccrec_v1",
    features=[
        user_category_sequence[
            [PAST_CATEGORIES, PAST_STARTS, PAST_ITEMS_FLAT, PAST_ITEM_COUNTS, NUM_PAST_EVENTS,
             NUM_PAST_CIS, NUM_PAST_CATEGORIES, LAST_TIMESTAMP]
        ],
        user_profile,
        category_popularity,
    ],
)
