"""Where each environment's Feast configuration (``feature_store.yaml``) is.

Kept apart from :mod:`features.store` so that command-line help can list the
environments without importing Feast.
"""

from pathlib import Path

#: The Feast repository (feature_store.yaml + definitions.py).
FEATURES_DIR = Path(__file__).resolve().parent

#: Each environment's Feast configuration.
ENVIRONMENTS = {
    # development: SQLite online store, file registry
    "sqlite": FEATURES_DIR / "feature_store.yaml",
    # development with Redis: Redis online store, file registry
    "redis": FEATURES_DIR / "feature_store.redis.yaml",
    # SQL registry on PostgreSQL, Redis online store with a key TTL
    "production": FEATURES_DIR.parent / "deploy" / "feast" / "feature_store.yaml",
}
