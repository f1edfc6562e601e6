"""Which stereoisomers does the score model sample from a stereo-free SMILES, and why are molecules missed?

    python -m benchmarks.conformers.conformer_isomers -n 200 -k 10              # QM9 test split, QM9's SMILES
    python -m benchmarks.conformers.conformer_isomers -n 100 --split val -k 20

QM9's SMILES specify no stereo, so ``se3mol conformers`` leaves every stereo element to the sampler. For
each molecule this generates K conformers exactly as ``benchmarks/conformers/conformers.py`` does (same function, same
derived seeds), perceives the stereoisomer of each conformer and of the DFT reference from their 3D
coordinates (RDKit ``AssignStereochemistryFrom3D``, compared as canonical isomeric SMILES), and records the
heavy-atom best RMSD of each conformer to the reference. The report says how many stereoisomers the K
conformers span, how often the reference's stereoisomer is among them, and, for the molecules that are not
covered (no conformer within the threshold), whether the reference's isomer was sampled at all and by how many
conformers. It also gives COV-R for the first ``k'`` conformers, ``k' <= K``, from the same samples.

Writes ``benchmarks/conformers/results/conformer_isomers.{json,md}`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks._results import read_result, results_dir, write_result
from benchmarks.conformers.conformers import pick_molecules

RESULTS = results_dir(__file__)


def isomer(mol) -> str:
    """The canonical isomeric SMILES (no hydrogens) of ``mol``'s single conformer, stereo perceived from 3D."""
    from rdkit import Chem

    mol = Chem.Mol(mol)
    Chem.AssignStereochemistryFrom3D(mol)
    return Chem.MolToSmiles(Chem.RemoveHs(mol))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--molecules", type=int, default=200)
    p.add_argument("-k", "--conformers", type=int, default=10)
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--model", default=None, help="score model (default: the shipped one)")
    p.add_argument("--oversample", type=float, default=None,
                   help="clofnet's --oversample (default 1.2; results before it existed sampled K: --oversample 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--part", default="0/1", help="I/N: score every N-th molecule from the I-th (parallel runs)")
    p.add_argument("--join", type=Path, nargs="+", default=None, metavar="JSON",
                   help="join the per-molecule rows of --part runs into --out; nothing is measured")
    p.add_argument("--out", type=Path, default=RESULTS / "conformer_isomers")
    args = p.parse_args()
    if args.join:
        parts = [read_result(path) for path in args.join]
        report = {**parts[0], "command": "; ".join(r["command"] for r in parts) + " (joined with --join)",
                  "rows": sorted((row for r in parts for row in r["rows"]), key=lambda row: row["index"])}
        write(report, args.out)
        return
    import numpy as np
    import torch
    from rdkit import rdBase

    from se3mol.conformers import SmilesInput, generate_one, load_clofnet_method
    from se3mol.conformers.metrics import heavy_atom_rmsd_matrix, split_conformers

    torch.set_num_threads(1)
    rdBase.DisableLog("rdApp.warning")
    part, parts = (int(v) for v in args.part.split("/"))
    molecules, _ = pick_molecules(args.molecules, split=args.split, stereo="smiles")
    method = load_clofnet_method(args.model)
    if args.oversample is not None:
        method.oversample = args.oversample
    rows = []
    for idx, (qm9_id, smiles, ref) in enumerate(molecules):
        if idx % parts != part:
            continue
        result = generate_one(SmilesInput(idx, "qm9", smiles, qm9_id), method, args.conformers, seed=args.seed)
        if result.status == "error":
            rows.append({"index": idx, "id": qm9_id, "smiles": smiles, "error": result.error})
            continue
        confs = split_conformers(result.mol)
        d, _ = heavy_atom_rmsd_matrix(confs, [ref])
        rows.append({"index": idx, "id": qm9_id, "smiles": smiles, "rmsd": np.round(d[:, 0], 4).tolist(),
                     "isomers": [isomer(c) for c in confs], "reference_isomer": isomer(ref)})
        print(f"{idx + 1}/{len(molecules)}", file=sys.stderr, flush=True)
    report = {"split": args.split,
              "n_molecules": len(molecules), "k": args.conformers, "seed": args.seed, "threshold": args.threshold,
              "model": args.model or "conformers-clofnet-qm9", "rows": rows}
    write(report, args.out)


def write(report: dict, out: Path) -> None:
    rows = [r for r in report["rows"] if "error" not in r]
    k, t = report["k"], report["threshold"]
    title = (f"Stereoisomers sampled from stereo-free SMILES ({len(rows)} QM9 {report['split']} molecules, "
             f"{k} conformers, {report['model']})")
    if len(report["rows"]) < report["n_molecules"]:
        write_result(out, title, report, [f"A part ({len(report['rows'])} of {report['n_molecules']} molecules): "
                                          "join the parts with --join for the report."], per_molecule=("rows",))
        return

    def covered(r, upto):
        return min(r["rmsd"][:upto]) < t

    missed = [r for r in rows if not covered(r, k)]
    has_ref = sum(r["reference_isomer"] in r["isomers"] for r in rows)
    on_ref = [sum(i == r["reference_isomer"] for i in r["isomers"]) for r in missed]
    lines = [f"Stereo of each conformer and of the DFT reference perceived from 3D; "
             f"covered: a conformer within {t} A heavy-atom best RMSD of the reference.", "",
             f"- Stereoisomers per molecule among the {k} conformers: mean "
             f"{statistics.fmean(len(set(r['isomers'])) for r in rows):.2f}, "
             f"molecules with more than one: {sum(len(set(r['isomers'])) > 1 for r in rows)}.",
             f"- The reference's stereoisomer is among them for {has_ref} of {len(rows)} molecules; "
             "the mean share of conformers on it is "
             f"{statistics.fmean(sum(i == r['reference_isomer'] for i in r['isomers']) / k for r in rows):.2f}.",
             f"- Not covered: {len(missed)} molecules. The reference's isomer was not sampled for "
             f"{sum(n == 0 for n in on_ref)} of them; for the others it had "
             + (", ".join(f"{n}" for n in sorted(n for n in on_ref if n)) or "-")
             + f" of {k} conformers.",
             f"- Errors: {len(report['rows']) - len(rows)}.", "",
             "| conformers used (the first k') | COV-R |", "|---|---|"]
    lines += [f"| {upto} | {100 * statistics.fmean(covered(r, upto) for r in rows):.1f}% |"
              for upto in sorted({1, 2, 5, k // 2, k} - {0}) if upto <= k]
    write_result(out, title, report, lines, per_molecule=("rows",))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
