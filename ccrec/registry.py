"""The bundle registry: which version of a bundles root is served, and which was before.

A bundles root holds one directory per version (:mod:`ccrec.bundle`) and two
symbolic links that serving reads::

    <root>/current  → <version>     what the Sampler and the Scorer serve
    <root>/previous → <version>     what ``ccrec rollback`` returns to
    <root>/registry.json            every publish and rollback, oldest first

Publishing re-points ``current`` atomically (a new link renamed over the old
one), so a reader sees the old version or the new one, never a missing link;
the serving stages follow the link (``serve.runtime.ModelSlots``), and a response is
computed by one version end to end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

CURRENT, PREVIOUS, LOG = "current", "previous", "registry.json"


class RegistryError(ValueError):
    """A version that is not a bundle of this root, or nothing to roll back to."""


@dataclass(frozen=True)
class Registry:
    """The registry of one bundles root.

    Args:
        root: the bundles root (e.g. ``runs/bundles/ml-1m``).
    """

    root: Path

    def _link(self, name: str) -> str | None:
        link = self.root / name
        return os.readlink(link) if link.is_symlink() else None

    @property
    def current(self) -> str | None:
        """The served version (None before the first publish)."""
        return self._link(CURRENT)

    @property
    def previous(self) -> str | None:
        return self._link(PREVIOUS)

    def path(self, version: str) -> Path:
        return self.root / version

    def versions(self) -> list[str]:
        """Every bundle version under the root, oldest first (version ids start with
        their UTC time)."""
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
                      and (p / "manifest.json").exists()) if self.root.is_dir() else []

    def history(self) -> list[dict]:
        log = self.root / LOG
        return json.loads(log.read_text()) if log.exists() else []

    def _point(self, name: str, version: str) -> None:
        staging = self.root / f".{name}.{os.getpid()}.tmp"
        staging.unlink(missing_ok=True)
        os.symlink(version, staging)  # relative: the root can move
        os.replace(staging, self.root / name)

    def record(self, action: str, version: str, **details) -> None:
        """Append an entry (publish, rollback, reject) to ``registry.json``."""
        entries = self.history() + [{"action": action, "version": version,
                                     "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                     **details}]
        staging = self.root / f".{LOG}.tmp"
        staging.write_text(json.dumps(entries, indent=2, default=float))
        os.replace(staging, self.root / LOG)

    def publish(self, version: str, **details) -> None:
        """Serve ``version``: ``previous`` ← the served one, ``current`` ← ``version``.

        Raises:
            RegistryError: ``version`` is not a bundle directory of this root.
        """
        if not (self.path(version) / "manifest.json").exists():
            raise RegistryError(f"{version} is not a bundle under {self.root}")
        served = self.current
        if served == version:
            return
        if served is not None:
            self._point(PREVIOUS, served)
        self._point(CURRENT, version)
        self.record("publish", version, replaced=served, **details)

    def rollback(self) -> str:
        """Serve the previous version again (``current`` and ``previous`` swap); returns it.

        Raises:
            RegistryError: there is no previous version.
        """
        back, served = self.previous, self.current
        if back is None or not (self.path(back) / "manifest.json").exists():
            raise RegistryError(f"{self.root} has no previous version to roll back to")
        self._point(CURRENT, back)
        if served is not None:
            self._point(PREVIOUS, served)
        self.record("rollback", back, replaced=served)
        return back
