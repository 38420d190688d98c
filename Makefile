# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed first so that no dependency can pull a CUDA build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium and its driver for the live page's browser test (Debian packages;
# does nothing when both are there). `make test` installs them first.
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium chromium-driver; }

demo: $(STAMP)
	$(BIN)/ccrec demo --insecure-dev

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -ra

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/prepare.py

clean:
	rm -rf $(VENV) .pytest_cache
