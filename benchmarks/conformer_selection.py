"""Which K of M sampled conformers to keep: does ranking by MMFF94 energy raise coverage?

    python benchmarks/conformer_selection.py -n 300 -m 20 [--offset 0] [--out STEM]

On QM9 *validation* molecules (the test split stays for benchmarks/conformers.py), with QM9's stereo-free
SMILES: sample M conformers per molecule with the shipped score model (``--oversample 1``, seed 0, as
``se3mol conformers`` does), score every one against the DFT geometry (heavy-atom best RMSD) and compute its
MMFF94 energy as sampled and after minimisation (``--relax``). Then COV-R at 0.5 A and MAT-R of K = 10 kept
conformers, chosen:

- ``first K`` / ``second K``: the first or second K samples (no choice; the baseline, twice);
- ``lowest energy as sampled of M'``: of the first M' samples, the K of lowest MMFF94 energy as sampled,
  what ``se3mol.conformers.generate.select_lowest_energy`` keeps (M' = 12, 15, 20 ...);
- ``lowest energy minimised of M``: the K whose minimised energy is lowest;
- ``all M``: every sample (an upper bound, with M conformers instead of K).

Per-molecule RMSDs and energies are written too, so other rules can be tried without sampling again.
Writes ``STEM.json`` and ``STEM.md`` (default ``benchmarks/results/conformer_selection``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from conformers import RESULTS, pick_molecules  # noqa: E402


def sample_and_score(molecules, m: int) -> list[dict]:
    from rdkit import Chem

    from se3mol.conformers.generate import SmilesInput, generate_one, load_clofnet_method, relax_mmff
    from se3mol.conformers.metrics import heavy_atom_rmsd_matrix, split_conformers

    method = load_clofnet_method()
    method.oversample = 1.0
    rows = []
    for idx, (qm9_id, smiles, ref) in enumerate(molecules):
        result = generate_one(SmilesInput(idx, "qm9", smiles, qm9_id), method, m, seed=0)
        if result.status == "error":
            rows.append({"id": qm9_id, "smiles": smiles, "error": result.error})
            continue
        d, _ = heavy_atom_rmsd_matrix(split_conformers(result.mol), [ref])
        relaxed = Chem.Mol(result.mol)
        outcomes = relax_mmff(relaxed)
        rows.append({"id": qm9_id, "smiles": smiles, "rmsd": np.asarray(d)[:, 0].tolist(),
                     "energy_sampled": [o.energy_before for o in outcomes],
                     "energy_minimised": [o.energy_after for o in outcomes]})
        if (idx + 1) % 25 == 0:
            print(f"  {idx + 1}/{len(molecules)}", file=sys.stderr, flush=True)
    return rows


def rules(k: int, m: int) -> dict[str, callable]:
    """Name -> rule(row) giving the indices of the kept conformers."""
    out = {f"first {k}": lambda r: range(k), f"second {k}": lambda r: range(k, 2 * k) if m >= 2 * k else None}
    for mm in sorted({12, 15, 20, m}):
        if k < mm <= m:
            out[f"lowest energy as sampled of {mm}"] = (
                lambda r, mm=mm: np.argsort(np.asarray(r["energy_sampled"][:mm]), kind="stable")[:k])
    out[f"lowest energy minimised of {m}"] = lambda r: np.argsort(np.asarray(r["energy_minimised"]), kind="stable")[:k]
    out[f"all {m}"] = lambda r: range(m)
    return out


def summarise(rows: list[dict], k: int, m: int, threshold: float) -> list[dict]:
    scored = [r for r in rows if "rmsd" in r]
    table = []
    for name, rule in rules(k, m).items():
        if rule(scored[0]) is None:
            continue
        best = [min(np.asarray(r["rmsd"])[list(rule(r))]) for r in scored]
        table.append({"rule": name, "cov_r": float(np.mean([b < threshold for b in best])),
                      "mat_r_mean": statistics.fmean(best), "mat_r_median": statistics.median(best)})
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--molecules", type=int, default=300)
    p.add_argument("-m", "--samples", type=int, default=20, help="conformers sampled per molecule")
    p.add_argument("-k", "--keep", type=int, default=10)
    p.add_argument("--offset", type=int, default=0, help="skip this many validation molecules first (to split a "
                                                           "run over processes; join with --join)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--join", type=Path, nargs="+", default=None, metavar="JSON",
                   help="summarise the per-molecule rows of earlier runs together; nothing is sampled")
    p.add_argument("--out", type=Path, default=RESULTS / "conformer_selection", help="results file stem")
    args = p.parse_args()
    command = "python benchmarks/conformer_selection.py " + " ".join(sys.argv[1:])
    if args.join:
        parts = [json.loads(path.read_text()) for path in args.join]
        rows = [r for part in parts for r in part["molecules"]]
        args.samples, args.keep = parts[0]["m"], parts[0]["k"]
        command = "; ".join(part["command"] for part in parts) + f" (joined with: {command})"
    else:
        import torch
        from rdkit import rdBase

        torch.set_num_threads(1)
        rdBase.DisableLog("rdApp.warning")
        molecules, _ = pick_molecules(args.offset + args.molecules, split="val", stereo="smiles")
        rows = sample_and_score(molecules[args.offset:], args.samples)
    table = summarise(rows, args.keep, args.samples, args.threshold)
    report = {"command": command, "split": "QM9 validation split, first molecules", "stereo": "smiles",
              "n_molecules": len(rows), "n_failed": sum("rmsd" not in r for r in rows), "m": args.samples,
              "k": args.keep, "threshold": args.threshold, "rules": table, "molecules": rows}
    out = args.out
    out.with_name(out.name + ".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Keeping {args.keep} of {args.samples} sampled conformers, {len(rows)} QM9 validation molecules", "",
             f"`{command}`", "",
             "QM9's SMILES (no stereo), shipped score model, default sampler, seed 0; heavy-atom best RMSD to the "
             f"DFT geometry, COV-R at {args.threshold} A. Failed molecules: {report['n_failed']}.", "",
             "| kept conformers | COV-R | MAT-R mean (A) | MAT-R median (A) |", "|---|---|---|---|"]
    lines += [f"| {t['rule']} | {100 * t['cov_r']:.1f}% | {t['mat_r_mean']:.3f} | {t['mat_r_median']:.3f} |"
              for t in table]
    out.with_name(out.name + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
