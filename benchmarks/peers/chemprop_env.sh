#!/usr/bin/env bash
# Create or update the benchmark environment of chemprop v2 (benchmarks/accuracy/own_data_vs_chemprop.py).
#
#   benchmarks/peers/chemprop_env.sh [ENV_DIR]    # ENV_DIR: $1, else $CHEMPROP_ENV, else /work/bench-chemprop
#
# chemprop is never a se3mol dependency: it brings its own stack (Lightning, RDKit, scikit-learn, astartes,
# descriptastorus, ...), so it lives in this separate venv. torch is installed FIRST and then pinned by a
# constraints file on the chemprop line: installing chemprop first would pull a multi-GB CUDA torch, and
# with the pin pip cannot replace torch (a chemprop that needs another torch fails to install instead).
# Exit status: non-zero if the venv, torch or chemprop cannot be set up, or if torch changed.
#
# Versions are pinned for reproducible figures:
#   torch 2.13.0 (the CPU build, when a local wheel of it is on pip's find-links path),
#   chemprop 2.3.1: the newest 2.x, resolves with torch 2.13.0 (checked with pip install --dry-run: it
#     leaves torch alone; it brings lightning 2.6.6 and rdkit 2026.3.6).
# Override them with TORCH_SPEC and CHEMPROP_SPEC.
#
# The exact commands this runs, for ENV_DIR=/work/bench-chemprop:
#   python3 -m venv /work/bench-chemprop
#   /work/bench-chemprop/bin/python -m pip install -c /work/bench-chemprop/chemprop-constraints.txt torch==2.13.0
#   /work/bench-chemprop/bin/python -m pip install -c /work/bench-chemprop/chemprop-constraints.txt chemprop==2.3.1
#   /work/bench-chemprop/bin/chemprop train --help
set -u

ENV_DIR=${1:-${CHEMPROP_ENV:-/work/bench-chemprop}}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
CHEMPROP_SPEC=${CHEMPROP_SPEC:-chemprop==2.3.1}

# shellcheck source=benchmarks/peers/torch_venv.sh
source "$(dirname "$0")/torch_venv.sh"
torch_venv "$ENV_DIR" chemprop

LOG="$ENV_DIR/pip-chemprop.log"
if ! "${PIP[@]}" "$CHEMPROP_SPEC" > "$LOG" 2>&1; then
  echo "cannot install $CHEMPROP_SPEC into $ENV_DIR:" >&2
  grep -E '^(ERROR|error):' "$LOG" | head -5 >&2
  echo "(full log: $LOG)" >&2
  exit 1
fi
TORCH_AFTER=$("$PY" -W ignore -c 'import torch; print(torch.__version__)')
if [ "$TORCH_AFTER" != "$TORCH_BEFORE" ]; then
  echo "torch changed from $TORCH_BEFORE to $TORCH_AFTER during the chemprop install" >&2
  exit 1
fi
"$ENV_DIR/bin/chemprop" train --help > /dev/null || { echo "chemprop train --help fails in $ENV_DIR" >&2; exit 1; }
"$PY" -W ignore -c 'import importlib.metadata as m
print("  ".join(f"{p} {m.version(p)}" for p in ("chemprop", "torch", "lightning", "rdkit")))'
