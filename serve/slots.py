"""The model bundles a serving stage holds, keyed by version.

A response is computed by one bundle version end to end. The Sampler samples
with its current version and names it in the :class:`~serve.pipeline.Shortlist`;
the Scorer scores with that version's weights. A stage keeps the previous
version beside the new one (``keep=2``), so a request sampled just before a
switch still scores with the weights that sampled it; a version older than
both is dropped when a newer one loads. A Scorer asked for a version it does
not hold (its replica has not seen the rollout yet, or started after it)
loads it from the bundle directory the Shortlist names before scoring: such
requests wait for the load, they never fail and never mix versions.

A configured bundle path may be a symlink (``/data/bundles/current``). The
stage loads its target, and a watcher thread resolves the link again every
``watch_s`` seconds and loads the new target when it moves: rolling out is
re-pointing the link. A load that fails leaves the stage serving what it
served, with the failure in its status (never ready for the new version), and
is not tried again until the link points elsewhere.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ccrec.bundle import Bundle, CascadeRecommender

log = logging.getLogger(__name__)


class ModelNotReady(RuntimeError):
    """No bundle is loaded, or the one a request needs cannot be (the API answers 503)."""


@dataclass(frozen=True)
class ModelStatus:
    """A stage's bundle (or both stages', :meth:`combine`).

    Args:
        ready: a bundle is loaded.
        version: the version it serves.
        error: why the last load failed, if it did (no file paths: this goes to clients).
    """

    ready: bool
    version: str | None
    error: str | None = None

    @staticmethod
    def combine(sampler: ModelStatus, scorer: ModelStatus) -> ModelStatus:
        version = sampler.version if sampler.version == scorer.version else \
            f"{sampler.version}/{scorer.version}"
        return ModelStatus(sampler.ready and scorer.ready, version,
                           sampler.error or scorer.error)


@dataclass(frozen=True)
class Served:
    """A loaded bundle.

    Args:
        recommender: its model.
        version: its version id (from its manifest).
        path: its directory, symlinks resolved.
    """

    recommender: CascadeRecommender
    version: str
    path: str


class ModelSlots:
    """The bundles of one stage: the current one and the ones loaded before it, by version.

    Args:
        path: a bundle directory (or a symlink to one) to serve now; None starts empty.
        keep: how many versions to hold.
        watch_s: seconds between looks at a symlinked path's target.
    """

    def __init__(self, path: str | Path | None = None, *, keep: int = 2,
                 watch_s: float = 2.0) -> None:
        self.keep, self.watch_s = keep, watch_s
        self._held: dict[str, Served] = {}  # version → bundle, oldest first
        self._current: Served | None = None
        self._lock = threading.Lock()  # one load at a time
        self._source: str | None = None
        self._target: str | None = None  # the last target tried, loaded or not
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None
        if path:
            self.configure(path)

    # -- what the stages call ---------------------------------------------------------------
    def current(self) -> Served:
        served = self._current
        if served is None:
            raise ModelNotReady(self.error or "no model bundle loaded")
        return served

    def held(self, version: str) -> Served | None:
        return self._held.get(version)

    def fetch(self, version: str, path: str) -> Served:
        """The bundle ``version``, loaded from ``path`` if this stage does not hold it.

        Raises:
            ModelNotReady: it does not load, or ``path`` holds another version.
        """
        served = self._held.get(version) or self._load(path, make_current=False)
        if served is None or served.version != version:
            raise ModelNotReady(f"bundle version {version} is not available here")
        return served

    def status(self) -> ModelStatus:
        served = self._current
        return ModelStatus(served is not None, served.version if served else None, self.error)

    # -- rollout ----------------------------------------------------------------------------
    def configure(self, path: str | Path) -> bool:
        """Serve the bundle at ``path`` (its target, if a symlink) and follow the link."""
        self._source = os.path.abspath(path)
        target = os.path.realpath(self._source)
        self._target = target
        loaded = self._load(target, make_current=True) is not None
        if target != self._source and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="bundle-watch",
                                             daemon=True)
            self._watcher.start()
        return loaded

    def load(self, path: str | Path) -> bool:
        """Serve the bundle at ``path`` (no symlink watch); False if it did not load."""
        return self._load(os.path.realpath(path), make_current=True) is not None

    def close(self) -> None:
        """Stop watching the symlink."""
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.watch_s):
            target = os.path.realpath(self._source)
            if target != self._target:
                self._target = target
                log.info("%s now points to %s", self._source, target)
                self._load(target, make_current=True)

    def _load(self, path: str, *, make_current: bool) -> Served | None:
        with self._lock:
            served = next((s for s in self._held.values() if s.path == path), None)
            if served is None:
                try:
                    bundle = Bundle.load(path)
                except Exception as exc:  # a missing or broken bundle must not stop the stage
                    log.warning("bundle %s not loaded: %s: %s", path, type(exc).__name__, exc)
                    if make_current:
                        self.error = (f"bundle {Path(path).name} did not load "
                                      f"({type(exc).__name__}); still serving "
                                      f"{self._current.version if self._current else 'none'}")
                    return None
                served = Served(bundle.recommender(), bundle.version, path)
                held = {v: s for v, s in self._held.items() if v != served.version}
                held[served.version] = served
                evictable = [v for v in held
                             if self._current is None or v != self._current.version]
                for version in evictable[:max(0, len(held) - self.keep)]:
                    del held[version]
                self._held = held
                log.info("loaded bundle %s (version %s)", path, served.version)
            if make_current:
                self._current, self.error = served, None
            return served
