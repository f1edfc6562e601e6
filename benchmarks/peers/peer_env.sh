#!/usr/bin/env bash
# Create or update the benchmark environment of se3mol's peer implementations (benchmarks/peers/peers.py).
#
#   benchmarks/peers/peer_env.sh [ENV_DIR]        # ENV_DIR: $1, else $PEER_ENV, else /tmp/peerenv
#
# The peers are never se3mol dependencies: they bring their own stacks (Lightning, Hydra, torch-geometric,
# NVIDIA Warp, ...) and version pins, so they live in this separate venv. torch is installed first and
# then pinned by a constraints file on every later pip line, so no peer can replace it (a peer that needs
# another torch fails to install instead). A peer that fails to install does not stop the others; the
# outcome of each is written to ENV_DIR/peer-install.txt and printed at the end. Exit status: non-zero
# only if the venv or torch cannot be set up.
#
# Versions are pinned for reproducible figures:
#   torch 2.13.0 (the CPU build, when a local wheel of it is on pip's find-links path),
#   egnn-pytorch 0.2.8, se3-transformer-pytorch 0.9.0,
#   schnetpack 2.0.4: the newest that resolves with torch 2.13.0 (schnetpack 2.1.x requires sympy<=1.12,
#     torch 2.13.0 requires sympy>=1.13.3); benchmarks/peers/peers.py shims the T_co type variable that
#     schnetpack's data loader imports and torch 2.13 no longer defines,
#   torchmd-net 3.1.0: pure Python (its neighbour lists run on NVIDIA Warp, CPU included), no compiled
#     torch extension, so it installs against torch 2.13.0 as is.
# Override any of them with the environment variables below.
set -u

ENV_DIR=${1:-${PEER_ENV:-/tmp/peerenv}}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PEER_SPECS=(
  "${EGNN_SPEC:-egnn-pytorch==0.2.8}"
  "${SE3T_SPEC:-se3-transformer-pytorch==0.9.0}"
  "${SCHNETPACK_SPEC:-schnetpack==2.0.4}"
  "${TORCHMDNET_SPEC:-torchmd-net==3.1.0}"
)

# shellcheck source=benchmarks/peers/torch_venv.sh
source "$(dirname "$0")/torch_venv.sh"
torch_venv "$ENV_DIR" peer

REPORT="$ENV_DIR/peer-install.txt"
: > "$REPORT.tmp"
for spec in "${PEER_SPECS[@]}"; do
  log="$ENV_DIR/pip-$(echo "$spec" | tr -c 'A-Za-z0-9.=-' '_').log"
  if "${PIP[@]}" "$TORCH_SPEC" "$spec" > "$log" 2>&1; then
    echo "ok      $spec" >> "$REPORT.tmp"
  else
    reason=$(grep -E '^(ERROR|error):' "$log" | head -3 | tr '\n' ' ')
    echo "FAILED  $spec: ${reason:-see $log}" >> "$REPORT.tmp"
  fi
done
TORCH_AFTER=$("$PY" -W ignore -c 'import torch; print(torch.__version__)')
if [ "$TORCH_AFTER" != "$TORCH_BEFORE" ]; then
  echo "FAILED  torch changed from $TORCH_BEFORE to $TORCH_AFTER during the peer installs" >> "$REPORT.tmp"
fi
echo "torch   $TORCH_AFTER" >> "$REPORT.tmp"
mv "$REPORT.tmp" "$REPORT"
cat "$REPORT"
