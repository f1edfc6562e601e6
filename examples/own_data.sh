#!/usr/bin/env bash
# Your own labelled molecules: train, evaluate and predict. Runs as written after `make demo` (a minute or two):
#   bash examples/own_data.sh
# labelled.csv holds 80 QM9 test-split molecules: SMILES, heat capacity Cv (cal/(mol K)) and HOMO-LUMO gap (eV),
# the gap missing for some rows (they still train Cv). SMILES are embedded in 3D (ETKDG+MMFF) once and cached.
set -euo pipefail
cd "$(dirname "$0")"
SE3MOL=${SE3MOL:-se3mol}
command -v "$SE3MOL" >/dev/null || SE3MOL=../.venv/bin/se3mol
OUT=${TMPDIR:-/tmp}/se3mol-own-data

echo "== Train on two targets with units, scaffold split; a tiny model, so it runs in a minute"
"$SE3MOL" train --data labelled.csv --smiles-column smiles --id-column name \
  --target "Cv:cal/(mol K)" --target gap:eV --split scaffold \
  --set hidden=32 --set layers=2 --batch-size 16 --epochs 10 --lr 2e-3 --out "$OUT" > /dev/null

echo "== Evaluate the run on the file: MAE / RMSE / R^2 per target, rows used and skipped, a parity plot"
"$SE3MOL" evaluate "$OUT" labelled.csv --smiles-column smiles --id-column name --plot "$OUT/parity.png" > /dev/null

echo "== Predict new molecules with it: columns named from the targets and their units (exit 3: some rows are errors)"
"$SE3MOL" predict molecules.smi --model "$OUT" -o "$OUT/scores.csv" 2>/dev/null || [ $? -eq 3 ]
python3 -c 'import csv,sys; [print(r["id"], r["status"], r["Cv_cal_mol_K"], r["gap_eV"], r["error"] or "", sep=" | ")
                             for r in csv.DictReader(open(sys.argv[1]))]' "$OUT/scores.csv"
