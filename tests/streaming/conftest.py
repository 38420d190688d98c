"""Streaming fixtures: one embedded broker per session, a vocabulary, stores, topics."""

from stream_helpers import broker, make_store, topics, vocab_dir  # noqa: F401
