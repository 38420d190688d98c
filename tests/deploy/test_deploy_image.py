"""deploy/Dockerfile: static checks (no engine here to build it).

The image must install the same pins as `make install` (torch first, from the
index of the chosen variant, then the rest), every package from a hashed lock
that agrees with constraints.txt, from a base image pinned by digest; copy only
paths that exist, run as a numeric non-root user, and keep the files the
containers read (features/, deploy/feast, deploy/serve) in the build context.
"""

from __future__ import annotations

import fnmatch
import re

from deploy_schemas import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
LOCKS = DEPLOY / "requirements"
#: name==version, then its `--hash=sha256:…` continuation lines
REQUIREMENT = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s*--hash=sha256:[0-9a-f]{64})*)", re.M)


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
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+@sha256:[0-9a-f]{64}", image), image


def _lock(name: str) -> dict[str, tuple[str, int]]:
    """A hashed lock: normalised package name → (version, number of hashes)."""
    text = (LOCKS / name).read_text()
    lines = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    found = {m.group(1).lower().replace("_", "-"): (m.group(2), m.group(3).count("--hash"))
             for m in REQUIREMENT.finditer(text)}
    assert len(found) == len(lines), f"{name}: a requirement without the pinned form"
    return found


def _constraints() -> dict[str, str]:
    return {m.group(1).lower().replace("_", "-"): m.group(2) for m in re.finditer(
        r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)}


def test_torch_matches_the_project_pin_and_is_installed_first() -> None:
    args = _args()
    pyproject = (REPO / "pyproject.toml").read_text()
    pin = re.search(r'"torch==([^"]+)"', pyproject).group(1)
    assert _constraints()["torch"] == pin
    assert _lock("torch-cpu.txt")["torch"][0] == f"{pin}+cpu"
    assert args["TORCH_VARIANT"] == "cpu"
    assert "${TORCH_VARIANT}" in args["TORCH_INDEX_URL"]
    runs = [a for op, a in _instructions() if op == "RUN"]
    (install,) = [r for r in runs if "torch-${TORCH_VARIANT}.txt" in r]
    assert install.index("torch-${TORCH_VARIANT}.txt") < install.index("runtime.txt"), \
        "torch must be installed before the other pins"
    assert '--index-url "${TORCH_INDEX_URL}"' in install


def test_every_package_is_installed_from_a_hashed_lock() -> None:
    installs = [part for op, a in _instructions() if op == "RUN"
                for part in a.split("&&") if "pip install" in part]
    assert len(installs) == 3
    for part in installs:
        # pip refuses a package whose hash the lock does not list; the project itself is
        # the source tree (no download, no dependencies, the locked build backend)
        assert "--require-hashes" in part or (
            part.split()[-2:] == ["-e", "."] and "--no-deps" in part
            and "--no-build-isolation" in part), part
    assert any(op == "RUN" and "pip check" in a for op, a in _instructions())


def test_the_locks_pin_what_constraints_pins_with_hashes() -> None:
    import tomllib

    constraints = _constraints()
    runtime, torch = _lock("runtime.txt"), _lock("torch-cpu.txt")
    for name, (version, hashes) in (runtime | torch).items():
        assert hashes >= 1, name
        if name not in {"torch", "setuptools"}:  # the variant's build; the build backend
            assert constraints.get(name) == version, (name, version, constraints.get(name))
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in dependencies:
        name = re.split(r"[\[=<>]", requirement)[0].lower().replace("_", "-")
        assert name in runtime or name == "torch", name
    assert "torch" not in runtime  # only from the variant's index


def test_copied_paths_exist_and_the_image_runs_ccrec() -> None:
    for op, args in _instructions():
        if op == "COPY":
            sources = [s for s in args.split() if not s.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), source
    ops = _instructions()
    assert ("ENTRYPOINT", '["tini", "--"]') in ops
    assert any(op == "RUN" and "ccrec --help" in a for op, a in ops)
    # a numeric user, so that Kubernetes' runAsNonRoot can check it: the image's ccrec
    uid = re.search(r"useradd .*--uid (\d+) ccrec", DOCKERFILE.read_text()).group(1)
    assert ("USER", f"{uid}:{uid}") in ops


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
