"""How close do atoms 3 or more bonds apart come in real molecules? The check behind the ``clashes`` field.

    python -m benchmarks.conformers.clash_rule -n 3000

``se3mol.conformers.geometry.clashes`` flags two atoms 3 or more bonds apart closer than ``CLASH_FACTOR``
times the sum of their van der Waals radii (RDKit). For the DFT (B3LYP) geometries of the first N molecules
of the QM9 test split, this reports the closest such approach per molecule, as that fraction: its minimum
and low percentiles, how many molecules fall below ``CLASH_FACTOR`` (a false alarm of the rule), and the
closest pairs with their atoms.

Writes ``benchmarks/conformers/results/clash_rule.{json,md}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks._results import results_dir, write_result
from benchmarks.conformers.conformers import pick_molecules

RESULTS = results_dir(__file__)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--molecules", type=int, default=3000)
    p.add_argument("--out", type=Path, default=RESULTS / "clash_rule")
    args = p.parse_args()
    import numpy as np
    from rdkit import Chem, rdBase

    from se3mol.conformers.geometry import CLASH_FACTOR, nonbonded_pairs

    rdBase.DisableLog("rdApp.warning")
    table = Chem.GetPeriodicTable()
    molecules, _ = pick_molecules(args.molecules, split="test")
    closest = []
    for qm9_id, smiles, ref in molecules:
        pairs = nonbonded_pairs(ref)
        if not len(pairs):
            continue
        pos = ref.GetConformer().GetPositions()
        radius = np.array([table.GetRvdw(a.GetAtomicNum()) for a in ref.GetAtoms()])
        distance = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=-1)
        ratio = distance / (radius[pairs[:, 0]] + radius[pairs[:, 1]])
        k = int(ratio.argmin())
        i, j = (ref.GetAtomWithIdx(int(a)) for a in pairs[k])
        closest.append({"id": qm9_id, "smiles": smiles, "ratio": float(ratio[k]),
                        "pair": f"{i.GetSymbol()}{i.GetIdx() + 1}...{j.GetSymbol()}{j.GetIdx() + 1}",
                        "distance": float(distance[k])})
    ratios = np.array([c["ratio"] for c in closest])
    report = {"clash_factor": CLASH_FACTOR,
              "n_molecules": len(molecules), "n_with_pairs": len(closest), "min": float(ratios.min()),
              "percentiles": {str(q): float(np.percentile(ratios, q)) for q in (0.1, 1, 5, 50)},
              "below_clash_factor": int((ratios < CLASH_FACTOR).sum()),
              "closest": sorted(closest, key=lambda c: c["ratio"])[:5]}
    lines = [f"As a fraction of the two atoms' van der Waals radii's sum (RDKit); `clashes` flags below "
             f"{CLASH_FACTOR}. Molecules with such pairs: {len(closest)}.", "",
             f"- Minimum over molecules: {report['min']:.3f}; percentiles 0.1 / 1 / 5 / 50: "
             + " / ".join(f"{v:.3f}" for v in report["percentiles"].values()) + ".",
             f"- Molecules below {CLASH_FACTOR} (false alarms of the rule): {report['below_clash_factor']}.", "",
             "| molecule | SMILES | closest pair | distance (A) | fraction |", "|---|---|---|---|---|"]
    lines += [f"| {c['id']} | `{c['smiles']}` | {c['pair']} | {c['distance']:.2f} | {c['ratio']:.3f} |"
              for c in report["closest"]]
    write_result(args.out, f"Closest approach of atoms 3 or more bonds apart in {len(molecules)} QM9 test molecules "
                 "(DFT)", report, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
