"""Imports point down the layers: models, data and the bundle never reach up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
#: The lower layers and what they may never import.
LOWER = ["ccrec/models", "ccrec/data", "ccrec/batch.py", "ccrec/bundle.py", "ccrec/losses.py",
         "ccrec/metrics.py", "ccrec/config.py"]
UPPER = ("ccrec.train", "ccrec.evaluate", "ccrec.cli", "serve", "streaming", "tune", "features")


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from … import`` in ``path`` names (lazy ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(entries: list[str]) -> list[Path]:
    out = []
    for entry in entries:
        path = ROOT / entry
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


@pytest.mark.parametrize("path", _files(LOWER), ids=lambda p: str(p.relative_to(ROOT)))
def test_lower_layers_import_nothing_above_them(path):
    upward = {m for m in imported_modules(path)
              if any(m == u or m.startswith(u + ".") for u in UPPER)}
    assert not upward, f"{path.relative_to(ROOT)} imports {sorted(upward)}"


def test_ccrec_imports_no_system_package():
    for path in _files(["ccrec"]):
        system = {m for m in imported_modules(path)
                  if m.split(".")[0] in ("serve", "streaming", "tune", "features")}
        assert not system, f"{path.relative_to(ROOT)} imports {sorted(system)}"


def test_the_checker_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from ccrec.train.loop import fit\n    import serve.api\n")
    assert imported_modules(module) == {"ccrec.train.loop", "serve.api"}
