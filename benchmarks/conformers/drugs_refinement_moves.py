"""How far a refinement moves ETKDG's heavy atoms, and whether towards the reference minima: the hybrid's score
model against an MMFF94 minimisation.

    python -m benchmarks.conformers.drugs_refinement_moves --reference data/drugs/val-r2 --limit 12 \
        [--model PATH] [--sampler temperature=0 --sampler start_sigma=1.0]

For each molecule: ``-n`` ETKDG conformers (the hybrid's starts, same seed), each refined by the hybrid's score
model (``--sampler`` changes its settings) and, separately, minimised with MMFF94. Reports the mean heavy-atom
RMSD (best alignment, symmetry-aware) of each refined conformer to its start ("moved"), and of each conformer to
its nearest conformer of the reference ensemble ("to nearest minimum"), before and after. A refinement that
pulls conformers into the minima the reference holds lowers the second figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from benchmarks._results import ROOT, md_table, results_dir, write_result

os.environ.setdefault("OMP_NUM_THREADS", "1")

RESULTS = results_dir(__file__)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, default=ROOT / "data" / "drugs" / "val-r2")
    p.add_argument("--limit", type=int, default=12, help="the first N molecules (by row)")
    p.add_argument("-n", type=int, default=8, help="ETKDG conformers per molecule")
    p.add_argument("--model", default=None, help="the hybrid's score model (default: its shipped one)")
    p.add_argument("--sampler", action="append", default=[], metavar="KEY=VALUE", help="a sampler setting")
    p.add_argument("--out", type=Path, default=RESULTS / "tuning" / "drugs_refinement_moves")
    args = p.parse_args()

    import numpy as np
    import torch
    from rdkit import Chem, rdBase

    from benchmarks.conformers.drugs import parse_settings
    from se3mol.chem import with_conformers
    from se3mol.conformers import heavy_atom_rmsd_matrix, make_method
    from se3mol.conformers.drugs import read_ensembles
    from se3mol.conformers.inputs import derive_seed, molecule_from_smiles
    from se3mol.conformers.methods import with_sampler_settings
    from se3mol.conformers.metrics import split_conformers
    from se3mol.conformers.relax import relax_mmff

    torch.set_num_threads(1)
    rdBase.DisableLog("rdApp.warning")
    changes = parse_settings(args.sampler)
    hybrid = with_sampler_settings(make_method("hybrid", **({"model": args.model} if args.model else {})), changes)
    etkdg = make_method("etkdg")
    rows = []
    for row, info, ref in read_ensembles(args.reference):
        if len(rows) == args.limit:
            break
        mol = molecule_from_smiles(info["smiles"])
        seed = derive_seed(0, Chem.MolToSmiles(Chem.RemoveHs(mol)))
        start, _ = etkdg.coordinates(mol, args.n, seed)
        refined = hybrid.refine.samples(mol, len(start), seed, start=start)
        relaxed = with_conformers(mol, start)
        relax_mmff(relaxed)
        minimised = np.array([c.GetPositions() for c in relaxed.GetConformers()])
        single = {k: split_conformers(with_conformers(mol, x))
                  for k, x in (("start", start), ("refined", refined), ("mmff", minimised))}
        reference = split_conformers(ref)
        moved = {k: float(np.diag(heavy_atom_rmsd_matrix(single["start"], single[k])[0]).mean())
                 for k in ("refined", "mmff")}
        nearest = {k: float(heavy_atom_rmsd_matrix(x, reference)[0].min(axis=1).mean()) for k, x in single.items()}
        rows.append({"row": row, **{f"moved_{k}": v for k, v in moved.items()},
                     **{f"nearest_{k}": v for k, v in nearest.items()}})
        print(row, {k: round(v, 3) for k, v in rows[-1].items() if k != "row"}, flush=True)
    keys = ["moved_refined", "moved_mmff", "nearest_start", "nearest_refined", "nearest_mmff"]
    mean = {k: statistics.mean(r[k] for r in rows) for k in keys}
    lines = [f"{len(rows)} molecules of `{args.reference.name}`, {args.n} ETKDG conformers each; score model "
             f"{args.model or 'the hybrid default'}, sampler settings {hybrid.refine.sampler_settings.to_dict()}.", "",
             *md_table(["heavy-atom RMSD (A), mean", "score-model refinement", "MMFF94 minimisation"],
                       [["moved from the ETKDG start", f"{mean['moved_refined']:.3f}", f"{mean['moved_mmff']:.3f}"],
                        ["start to nearest reference minimum", f"{mean['nearest_start']:.3f}",
                         f"{mean['nearest_start']:.3f}"],
                        ["result to nearest reference minimum", f"{mean['nearest_refined']:.3f}",
                         f"{mean['nearest_mmff']:.3f}"]])]
    write_result(args.out, "How far a refinement moves ETKDG conformers, and whether towards the minima",
                 {"reference": str(args.reference), "model": args.model, "sampler": changes, "mean": mean,
                  "molecules": rows}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
