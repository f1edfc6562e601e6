# Two commands for a fresh machine: `make demo` (set up, score examples/ with the shipped default
# model) and `make test` (set up, lint, build the docs strictly, run the test suite). Both create .venv on
# first use. `make docs` builds the documentation site (docs/, mkdocs.yml) into site/.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.se3mol-installed
# torch first, pinned: an open range could pull a multi-GB CUDA build on a CPU machine.
TORCH ?= torch==2.13.0

.PHONY: setup demo docs test test-all lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[qm9,test,docs]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/se3mol models
	$(BIN)/se3mol predict examples/molecules.sdf examples/molecules.xyz examples/molecules.smi --format table

# ruff; the import layers of pyproject.toml's [tool.importlinter]; mypy on se3mol/ ([tool.mypy]).
lint: $(STAMP)
	$(BIN)/ruff check se3mol tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

# --strict: a broken link or anchor, or a page missing from the nav, fails the build (and so make test);
# never add --quiet, which hides the warnings from --strict too (the build then passes with broken links).
# NO_MKDOCS_2_WARNING silences Material's end-of-life banner, which is not a build warning.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: $(STAMP) lint docs
	$(BIN)/python -m pytest

# Including the slow tests (minutes more).
test-all: $(STAMP) lint docs
	$(BIN)/python -m pytest -m ""

clean:
	rm -rf $(VENV) build dist site *.egg-info .pytest_cache .ruff_cache
