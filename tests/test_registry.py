"""The bundle registry: publish re-points current and previous; rollback swaps them."""

from __future__ import annotations

import json
import os

import pytest

from ccrec.registry import Registry, RegistryError


def _bundle(root, version):
    (root / version).mkdir(parents=True)
    (root / version / "manifest.json").write_text(json.dumps({"version": version}))


def test_publish_and_rollback(tmp_path):
    registry = Registry(tmp_path)
    for version in ("20260101T000000Z-a", "20260102T000000Z-b", "20260103T000000Z-c"):
        _bundle(tmp_path, version)
    assert registry.current is None and registry.versions() == [
        "20260101T000000Z-a", "20260102T000000Z-b", "20260103T000000Z-c"]
    with pytest.raises(RegistryError, match="no previous version"):
        registry.rollback()

    registry.publish("20260101T000000Z-a", cutoff=5)
    assert (registry.current, registry.previous) == ("20260101T000000Z-a", None)
    registry.publish("20260102T000000Z-b")
    assert (registry.current, registry.previous) == ("20260102T000000Z-b", "20260101T000000Z-a")
    # the links are relative (the root may move) and resolve to the bundles
    assert os.readlink(tmp_path / "current") == "20260102T000000Z-b"
    assert (tmp_path / "current" / "manifest.json").exists()

    assert registry.rollback() == "20260101T000000Z-a"
    assert (registry.current, registry.previous) == ("20260101T000000Z-a", "20260102T000000Z-b")
    assert registry.rollback() == "20260102T000000Z-b"  # and forward again
    assert [(e["action"], e["version"], e["replaced"]) for e in registry.history()] == [
        ("publish", "20260101T000000Z-a", None),
        ("publish", "20260102T000000Z-b", "20260101T000000Z-a"),
        ("rollback", "20260101T000000Z-a", "20260102T000000Z-b"),
        ("rollback", "20260102T000000Z-b", "20260101T000000Z-a"),
    ]
    assert registry.history()[0]["cutoff"] == 5
    # the symlinks are not versions; no temporary link is left behind
    assert "current" not in registry.versions()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_publish_refuses_what_is_not_a_bundle(tmp_path):
    registry = Registry(tmp_path)
    _bundle(tmp_path, "v1")
    (tmp_path / "v2").mkdir()
    with pytest.raises(RegistryError, match="v2 is not a bundle"):
        registry.publish("v2")
    with pytest.raises(RegistryError, match="v3 is not a bundle"):
        registry.publish("v3")
    assert registry.current is None
