# hrm-mlir developer entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXAMPLE := examples/sudoku6x6
OUT := out/demo

TRM_EXAMPLE := examples/trm-sudoku6x6

.PHONY: venv test test-fast lint demo demo-trm clean system-packages

venv: $(STAMP)

# Re-installs when pyproject.toml changes. torch==2.13.0 is a CPU wheel on this machine kind's
# disk (pip's find-links); a looser pin would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench,ray]'
	bash scripts/aarch64_runtime.sh $(VENV)
	touch $(STAMP)

# Debian packages for running ARM64 artifacts (qemu-user) and Vulkan ones (lavapipe); as root
system-packages:
	bash scripts/system_packages.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Everything, as CI runs it; the 30 slowest tests are printed, so a slowdown shows itself.
test: lint
	$(BIN)/pytest -q --durations=30

# The unit tier for the inner loop (231 tests in 70 s on a 2-core Zen 3): what compiles with
# IREE, starts Ray or qemu, walks a whole dataset or times runtimes is marked `integration`
# (tests/conftest.py), the 27M-parameter tests `slow`.
test-fast: venv
	$(BIN)/pytest -q -m "not slow and not integration" --durations=10

demo: venv
	bash scripts/demo.sh $(EXAMPLE) $(OUT)

# the same pipeline on the bundled TRM (Tiny Recursive Model) example
demo-trm: venv
	bash scripts/demo.sh $(TRM_EXAMPLE) out/demo-trm

clean:
	rm -rf out build .pytest_cache
