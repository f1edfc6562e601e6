#!/usr/bin/env bash
# Batch scoring in shell pipelines; runs as written from anywhere after `make demo`:
#   bash examples/pipeline.sh
set -euo pipefail
cd "$(dirname "$0")"
SE3MOL=${SE3MOL:-se3mol}
command -v "$SE3MOL" >/dev/null || SE3MOL=../.venv/bin/se3mol

echo "== The three molecules with the smallest predicted HOMO-LUMO gap (SDF on stdin, CSV on stdout)"
# Columns: index,id,source,smiles,n_atoms,status,error, then the default model's 12 targets (mu_D, alpha_bohr3,
# homo_meV, lumo_meV, gap_meV, ...: gap is column 12), warning, notes. Rows with status ok have an empty error
# field, so plain comma splitting is safe on them (an error message may contain quoted commas).
cat molecules.sdf | "$SE3MOL" predict - --input-format sdf 2>/dev/null \
  | grep ',ok,' | sort -t, -k12,12 -g | head -n 3 | cut -d, -f2,4,12

echo "== Every example file at once, as JSON Lines, keeping id, status and gap"
"$SE3MOL" predict molecules.sdf molecules.xyz molecules.smi --format jsonl 2>/dev/null \
  | python3 -c 'import json,sys; [print(r["id"], r["status"], r["gap_meV"]) for r in map(json.loads, sys.stdin)]'

echo "== Bad records get error rows, the rest are scored; exit status 3 says some rows are errors"
status=0
printf 'CCO ethanol\nC1CC broken-ring\nCS methanethiol\n' \
  | "$SE3MOL" predict - --input-format smi -o "${TMPDIR:-/tmp}/se3mol-scores.csv" 2>/dev/null || status=$?
echo "exit status: $status"
python3 -c 'import csv,sys; [print(r["id"], r["status"], r["error"], sep=" | ") for r in csv.DictReader(open(sys.argv[1]))]' \
  "${TMPDIR:-/tmp}/se3mol-scores.csv"
