# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# torch==2.13.0 is installed first so that no dependency can pull a CUDA build.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test lint bench bench-gpu_check clean

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
	CCREC_CONSOLE=clean $(BIN)/ccrec demo --insecure-dev

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -ra -n 3 --dist loadfile --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/ruff check .

# `make bench` runs every benchmark; `make bench-NAME` runs benchmarks.NAME alone. Each
# writes benchmarks/results/NAME.json (replaced only when the run succeeds), then the goals
# table in docs/performance.md is redrawn from those files.
BENCHMARKS := prepare train_speed inference train_scaling cascade_validation serve page \
              stream chaos elastic continual

bench: $(addprefix bench-,$(BENCHMARKS)) bench-gpu_check
	$(BIN)/python -m benchmarks.goals --write docs/performance.md

bench-%: $(STAMP)
	$(BIN)/python -m benchmarks.$* > benchmarks/results/$*.json.part \
	  || { rm -f benchmarks/results/$*.json.part; exit 1; }
	mv benchmarks/results/$*.json.part benchmarks/results/$*.json

# Status 2: no CUDA device here; gpu_check.json is left as it is (docs: "not run").
bench-gpu_check: $(STAMP)
	@$(BIN)/python -m benchmarks.gpu_check > benchmarks/results/gpu_check.json.part; \
	  rc=$$?; if [ $$rc -eq 0 ]; then mv benchmarks/results/gpu_check.json.part \
	  benchmarks/results/gpu_check.json; else rm -f benchmarks/results/gpu_check.json.part; \
	  [ $$rc -eq 2 ] || exit $$rc; fi

clean:
	rm -rf $(VENV) .pytest_cache
