"""deploy/Dockerfile: static checks (no engine here to build it).

The image must install the same pins as `make install` (torch first, from the
index of the chosen variant, then constraints.txt), copy only paths that exist,
and keep the files the containers read (features/, deploy/feast, deploy/serve)
in the build context.
"""

from __future__ import annotations

import fnmatch
import re

from deploy_schemas import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def _args() -> dict[str, str]:
    return dict(a.split("=", 1) for op, a in _instructions() if op == "ARG" and "=" in a)


def test_base_image_is_pinned() -> None:
    froms = [a for op, a in _instructions() if op == "FROM"]
    assert froms == ["${PYTHON_IMAGE}"]
    image = _args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image


def test_torch_matches_the_project_pin_and_has_a_gpu_variant() -> None:
    args = _args()
    pyproject = (REPO / "pyproject.toml").read_text()
    constraints = (REPO / "constraints.txt").read_text()
    pin = re.search(r'"torch==([^"]+)"', pyproject).group(1)
    assert args["TORCH_VERSION"] == pin
    assert f"torch=={pin}" in constraints.splitlines()
    assert args["TORCH_VARIANT"] == "cpu"
    assert "${TORCH_VARIANT}" in args["TORCH_INDEX_URL"]
    runs = [a for op, a in _instructions() if op == "RUN"]
    torch_run = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    deps_run = next(i for i, r in enumerate(runs) if "constraints.txt" in r)
    assert torch_run < deps_run, "torch must be installed before the other pins"
    assert "--index-url" in runs[torch_run]


def test_copied_paths_exist_and_the_image_runs_ccrec() -> None:
    for op, args in _instructions():
        if op == "COPY":
            sources = [s for s in args.split() if not s.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), source
    ops = _instructions()
    assert ("ENTRYPOINT", '["tini", "--"]') in ops
    assert any(op == "RUN" and "ccrec --help" in a for op, a in ops)
    assert ("USER", "ccrec") in ops


def test_build_context_keeps_what_the_containers_read() -> None:
    patterns = [
        p.strip() for p in DOCKERIGNORE.read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatch(pre, pat) for pat in patterns for pre in prefixes)

    needed = [
        "pyproject.toml", "constraints.txt", "ccrec/cli.py", "features/definitions.py",
        "features/feature_store.yaml", "deploy/feast/feature_store.yaml",
        "deploy/serve/serve_config.yaml", "serve/__init__.py", "streaming/__init__.py",
        "tune/__init__.py",
    ]
    for path in needed:
        assert not ignored(path), f"{path} is excluded from the image"
    assert ignored(".venv/bin/python") and ignored(".git/HEAD")
