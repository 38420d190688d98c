#!/bin/sh
# Regenerate the hashed requirement locks the image installs (deploy/Dockerfile)
# from the project's pins: constraints.txt, the dependencies of pyproject.toml.
# The tool is uv (astral-sh/uv, `pip install uv==0.13.8`): `uv pip compile
# --generate-hashes` records every distribution's SHA-256 from the index, and
# `pip install --require-hashes` refuses anything else.
#
#   sh deploy/requirements/compile.sh            (from the repository root)
#
#   runtime.txt    every runtime dependency but torch, with their dependencies, at the
#                  versions of constraints.txt; plus setuptools, the build backend of
#                  `pip install --no-build-isolation -e .`
#   torch-cpu.txt  torch (the CPU build, from https://download.pytorch.org/whl/cpu) and
#                  its dependencies. A CUDA image (TORCH_VARIANT=cu128) needs
#                  torch-cu128.txt: the same command with --index-url of that variant.
#
# Both target the image: CPython 3.11.13 on x86_64 Linux (manylinux_2_28).
set -eu
cd "$(dirname "$0")"
TARGET="--python-version 3.11.13 --python-platform x86_64-manylinux_2_28 --generate-hashes"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
grep -v '^torch==' ../../constraints.txt > "$TMP/constraints.txt"
python3 - "$TMP/runtime.in" <<'PY'
import sys, tomllib
deps = tomllib.load(open("../../pyproject.toml", "rb"))["project"]["dependencies"]
lines = [d for d in deps if not d.startswith("torch==")] + ["setuptools==84.2.1"]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
TORCH=$(grep '^torch==' ../../constraints.txt | cut -d= -f3)
echo "torch==${TORCH}+cpu" > "$TMP/torch.in"
uv pip compile $TARGET --no-annotate --custom-compile-command "sh deploy/requirements/compile.sh" --index-url https://pypi.org/simple \
    -c "$TMP/constraints.txt" "$TMP/runtime.in" -o runtime.txt
uv pip compile $TARGET --no-annotate --custom-compile-command "sh deploy/requirements/compile.sh" --index-url https://pypi.org/simple \
    --extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match \
    -c "$TMP/constraints.txt" "$TMP/torch.in" -o torch-cpu.txt
