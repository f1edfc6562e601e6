# Two commands for a fresh machine: `make demo` (set up, score examples/ with the shipped default
# model) and `make test` (set up, lint, run the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.se3mol-installed
# torch first, pinned: an open range could pull a multi-GB CUDA build on a CPU machine.
TORCH ?= torch==2.13.0

.PHONY: setup demo test test-all lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[qm9,test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/se3mol models
	$(BIN)/se3mol predict examples/molecules.sdf examples/molecules.xyz examples/molecules.smi --format table

lint: $(STAMP)
	$(BIN)/ruff check se3mol tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest

# Including the slow tests (minutes more).
test-all: $(STAMP) lint
	$(BIN)/python -m pytest -m ""

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
