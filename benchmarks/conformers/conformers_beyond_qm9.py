"""The shipped score model on molecules larger than its QM9 training molecules, beside ETKDG.

    python -m benchmarks.conformers.conformers_beyond_qm9

QM9 molecules have at most 9 heavy atoms (29 atoms with hydrogens), and the score model's graph holds only
bonds and pairs up to 3 bonds apart. For a handful of familiar molecules from 12 to 37 heavy atoms this
generates 10 conformers with ``--method clofnet`` and ``--method etkdg`` exactly as ``se3mol conformers``
does and reports, per molecule and method: the time taken (without relaxation), conformers with clashing
atoms (``se3mol.conformers.geometry``) and with a stretched bond, the closest approach of two atoms 3 or
more bonds apart (as a fraction of their van der Waals radii's sum), the median MMFF94 energy of the
conformers as generated and after relaxation (kcal/mol), and whether the molecule was flagged as
extrapolation.

Writes ``benchmarks/conformers/results/conformers_beyond_qm9.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from benchmarks._results import results_dir, write_result

os.environ.setdefault("OMP_NUM_THREADS", "1")

RESULTS = results_dir(__file__)
MOLECULES = [
    ("glucose", "OCC1OC(O)C(O)C(O)C1O"),
    ("aspirin", "CC(=O)Oc1ccccc1C(=O)O"),
    ("caffeine", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"),
    ("ibuprofen", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"),
    ("palmitic acid", "CCCCCCCCCCCCCCCC(=O)O"),
    ("imatinib", "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-k", "--conformers", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="score model (default: the shipped one)")
    p.add_argument("--oversample", type=float, default=None,
                   help="clofnet's --oversample (default 1.2; results before it existed sampled K: --oversample 1)")
    p.add_argument("--out", type=Path, default=RESULTS / "conformers_beyond_qm9")
    args = p.parse_args()
    import numpy as np
    import torch
    from rdkit import Chem, rdBase

    from se3mol.conformers import EtkdgMethod, SmilesInput, generate_one, load_clofnet_method, relax_mmff
    from se3mol.conformers.geometry import nonbonded_pairs

    torch.set_num_threads(1)
    rdBase.DisableLog("rdApp.warning")
    table = Chem.GetPeriodicTable()
    methods = [load_clofnet_method(args.model), EtkdgMethod()]
    if args.oversample is not None:
        methods[0].oversample = args.oversample
    rows = []
    for name, smiles in MOLECULES:
        for method in methods:
            r = generate_one(SmilesInput(0, "benchmark", smiles, name), method, args.conformers, seed=args.seed)
            if r.status == "error":
                rows.append({"molecule": name, "method": method.name, "error": r.error})
                continue
            mol = r.mol
            pairs = nonbonded_pairs(mol)
            radius = np.array([table.GetRvdw(a.GetAtomicNum()) for a in mol.GetAtoms()])
            pos = np.stack([c.GetPositions() for c in mol.GetConformers()])
            ratio = np.linalg.norm(pos[:, pairs[:, 0]] - pos[:, pairs[:, 1]], axis=-1) / \
                (radius[pairs[:, 0]] + radius[pairs[:, 1]])
            relaxed = relax_mmff(Chem.Mol(mol))  # on a copy: the checks above read the conformers as generated
            rows.append({"molecule": name, "method": method.name, "smiles": smiles,
                         "heavy_atoms": Chem.RemoveHs(mol).GetNumAtoms(), "atoms": mol.GetNumAtoms(),
                         "conformers": r.n_conformers, "clashing": sum(bool(c) for c in r.clashes),
                         "torn": sum(bool(b) for b in r.stretched), "closest_ratio": float(ratio.min()),
                         "mmff_before_median": statistics.median(o.energy_before for o in relaxed),
                         "mmff_after_median": statistics.median(o.energy_after for o in relaxed),
                         "extrapolation": "; ".join(r.extrapolation) or "none", "seconds": r.seconds})
            print(rows[-1], file=sys.stderr)
    report = {"k": args.conformers, "seed": args.seed, "model": args.model or "conformers-clofnet-qm9",
              "oversample": methods[0].oversample, "rows": rows}
    lines = markdown(report)
    write_result(args.out, f"Conformers of molecules larger than QM9's ({report['k']} per molecule, seed "
                 f"{report['seed']}, score model {report['model']}, clofnet oversample {report['oversample']})",
                 report, lines)
    print("\n".join(lines))


def markdown(report: dict) -> list[str]:
    rows = report["rows"]
    lines = ["| molecule | heavy atoms (all) | method | clashing | torn | closest approach / vdW sum "
             "| MMFF94 median, as generated (kcal/mol) | after relaxation | extrapolation flagged | s (1 thread) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['molecule']} | | {r['method']} | error: {r['error']} | | | | | | |")
            continue
        closest = f"{r['closest_ratio']:.2f}"
        lines.append(f"| {r['molecule']} | {r['heavy_atoms']} ({r['atoms']}) | {r['method']} | {r['clashing']} of "
                     f"{r['conformers']} | {r['torn']} | {closest} | {r['mmff_before_median']:.1f} | "
                     f"{r['mmff_after_median']:.1f} | {'no' if r['extrapolation'] == 'none' else 'yes'} | "
                     f"{r['seconds']:.2f} |")
    lines += ["", "Clashing: two atoms 3 or more bonds apart closer than half their van der Waals radii's sum. "
              "Torn: a bond longer than the atoms' covalent radii plus 0.45 A. Both are read on the conformers "
              "as generated; the energies are MMFF94 (RDKit) before and after `--relax`."]
    return lines


if __name__ == "__main__":
    main()
