# hrm-mlir developer entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXAMPLE := examples/sudoku6x6
OUT := out/demo

.PHONY: venv test lint demo clean

venv: $(STAMP)

# Re-installs when pyproject.toml changes. torch==2.13.0 is a CPU wheel on this machine kind's
# disk (pip's find-links); a looser pin would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench,ray]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

demo: venv
	bash scripts/demo.sh $(EXAMPLE) $(OUT)

clean:
	rm -rf out build .pytest_cache
