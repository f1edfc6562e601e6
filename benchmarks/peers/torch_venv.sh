# Sourced by peer_env.sh and chemprop_env.sh: a benchmark venv whose torch is installed first and pinned.
#
#   torch_venv ENV_DIR NAME     # needs PYTHON and TORCH_SPEC; sets PY, CONSTRAINTS, PIP (an array), TORCH_BEFORE
#
# torch goes in first and is then pinned by ENV_DIR/NAME-constraints.txt on every later "${PIP[@]}" line, so
# no package installed after it can replace it (one that needs another torch fails to install instead).
# Exits the calling script if the venv or torch cannot be set up.
torch_venv() {
  local env_dir=$1 name=$2
  if [ ! -x "$env_dir/bin/python" ]; then
    "$PYTHON" -m venv "$env_dir" || { echo "cannot create venv $env_dir with $PYTHON" >&2; exit 1; }
  fi
  PY="$env_dir/bin/python"
  CONSTRAINTS="$env_dir/$name-constraints.txt"
  echo "$TORCH_SPEC" > "$CONSTRAINTS"
  PIP=("$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS")
  "${PIP[@]}" "$TORCH_SPEC" || { echo "cannot install $TORCH_SPEC into $env_dir" >&2; exit 1; }
  TORCH_BEFORE=$("$PY" -W ignore -c 'import torch; print(torch.__version__)')
  case "$TORCH_BEFORE" in
    *+cpu) ;;
    *) echo "note: torch $TORCH_BEFORE is not a CPU build (no local CPU wheel found); figures are still CPU runs" >&2 ;;
  esac
}
