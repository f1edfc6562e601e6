"""Tune the annealed Langevin sampler on QM9 *validation* molecules (the test split stays for the benchmark).

    python -m benchmarks.conformers.conformer_sampler_sweep --model runs/conformers-clofnet-qm9/best.pt -n 30 \\
        --grid 50x4,50x10,25x8 [--eps 2.4e-5] [--relax]

For each ``LEVELSxSTEPS`` setting: COV-R (0.5 A), MAT-R and seconds per molecule for K conformers of the
first N validation-split molecules, as ``benchmarks/conformers/conformers.py`` measures them. Prints a table and
writes ``benchmarks/conformers/results/conformer_sampler_sweep.{json,md}`` unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks._results import md_table, results_dir, write_result
from benchmarks.conformers.conformers import pick_molecules, run_method

RESULTS = results_dir(__file__)


class Mirrored:
    """A score sampler whose conformers of molecules with no specified stereo are mirrored (x -> -x): every
    second one (``half``) or all (``all``). An experiment, not a setting: the score model is not
    reflection-equivariant, so does it prefer the hand of QM9's reference geometries (which, for stereo-free
    SMILES, is whatever the geometry builder of QM9 chose)? If it does, mirroring lowers COV-R."""

    def __init__(self, sampler, which: str) -> None:
        self.sampler, self.which = sampler, which

    def __getattr__(self, name: str):
        return getattr(self.sampler, name)

    def sample(self, mol, n: int, seed: int = 0, settings=None):
        from se3mol.conformers.stereo import stereo_targets

        xyz = self.sampler.sample(mol, n, seed, settings)
        if not len(stereo_targets(mol)):
            xyz = xyz.copy()
            xyz[slice(1, None, 2) if self.which == "half" else slice(None), :, 0] *= -1
        return xyz


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("-n", "--molecules", type=int, default=30)
    p.add_argument("-k", "--conformers", type=int, default=10)
    p.add_argument("--grid", default="50x4,50x10",
                   help="comma-separated LEVELSxSTEPS, or LEVELSxSTEPS/COARSE@SIGMA: COARSE steps above SIGMA")
    p.add_argument("--eps", type=float, default=None, help="step size at sigma_min (default: 2.4e-4 / steps)")
    p.add_argument("--sigma-max", type=float, default=None)
    p.add_argument("--clip", type=float, default=None)
    p.add_argument("--relax", action="store_true")
    p.add_argument("--stereo", choices=("smiles", "reference"), default="smiles",
                   help="SMILES as in QM9 (no stereo) or with the stereo of the DFT reference")
    p.add_argument("--stereo-weights", default=None, help="comma-separated stereo_weight values to try")
    p.add_argument("--mirror", default="none",
                   help="comma-separated from none, half, all: mirror no, every second or every conformer of "
                        "molecules with no specified stereo (an experiment on the preferred hand; see Mirrored)")
    p.add_argument("--repulsion", default=None,
                   help="comma-separated particle-guidance weights to try (SamplerSettings.repulsion)")
    p.add_argument("--repulsion-sigma", type=float, default=None,
                   help="apply the repulsion only at noise levels up to this sigma (Angstrom)")
    p.add_argument("--oversample", type=float, default=None,
                   help="sample this many times K and keep the K of lowest MMFF94 energy (default: clofnet's, 1.2; "
                        "sweeps before it existed sampled K)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--out", type=Path, default=None,
                   help="results file stem (default benchmarks/conformers/results/conformer_sampler_sweep)")
    args = p.parse_args()
    import torch
    from rdkit import rdBase

    from se3mol.conformers import load_clofnet_method

    torch.set_num_threads(1)
    rdBase.DisableLog("rdApp.warning")
    molecules, _ = pick_molecules(args.molecules, split="val", stereo=args.stereo)
    rows = []
    weights = [float(w) for w in args.stereo_weights.split(",")] if args.stereo_weights else [None]
    mirrors = args.mirror.split(",")
    if set(mirrors) - {"none", "half", "all"}:
        p.error(f"--mirror takes none, half and all, got {args.mirror!r}")
    repulsions = [float(v) for v in args.repulsion.split(",")] if args.repulsion else [None]
    for grid_item, weight, mirror, repulsion in [(g, w, m, r) for g in args.grid.split(",") for w in weights
                                                 for m in mirrors for r in repulsions]:
        fine, _, coarse = grid_item.lower().partition("/")
        levels, steps = (int(v) for v in fine.split("x"))
        item = grid_item if weight is None else f"{grid_item} stereo {weight:g}"
        item += "" if mirror == "none" else f" mirror {mirror}"
        item += "" if repulsion is None else f" repulsion {repulsion:g}"
        item += "" if repulsion is None or args.repulsion_sigma is None else f" below {args.repulsion_sigma:g} A"
        method = load_clofnet_method(args.model)
        if args.oversample is not None:
            method.oversample = args.oversample
        if mirror != "none":
            method.sampler = Mirrored(method.sampler, mirror)
        changes = {"levels": levels, "steps": steps, "eps": args.eps}
        if coarse:
            coarse_steps, _, coarse_sigma = coarse.partition("@")
            changes.update(coarse_steps=int(coarse_steps), coarse_sigma=float(coarse_sigma))
        if weight is not None:
            changes["stereo_weight"] = weight
        if repulsion is not None:
            changes["repulsion"] = repulsion
            changes["repulsion_sigma"] = args.repulsion_sigma
        if args.sigma_max is not None:
            changes["sigma_max"] = args.sigma_max
        if args.clip is not None:
            changes["clip"] = args.clip
        method.sampler_settings = replace(method.sampler_settings, **changes)
        r = run_method(f"clofnet {item}", method, args.relax, molecules, args.conformers, 0, 0.5)
        keys = ("cov_r_mean", "mat_r_mean", "mat_r_median", "cov_p_mean", "mat_p_mean", "seconds_per_molecule_mean",
                "n_failed", "stereo_wrong_conformers", "conformers")
        row = {"setting": item, "evaluations": method.sampler_settings.evaluations, **{k: r[k] for k in keys},
               "sampler": method.sampler_settings.to_dict(), "oversample": method.oversample, "relax": args.relax}
        rows.append(row)
        print(f"{item}: COV-R {row['cov_r_mean']:.3f} MAT-R {row['mat_r_mean']:.3f} (median "
              f"{row['mat_r_median']:.3f}) COV-P {row['cov_p_mean']:.3f} "
              f"stereo wrong {row['stereo_wrong_conformers']}/{row['conformers']} "
              f"{row['evaluations']} evaluations {row['seconds_per_molecule_mean']:.2f} s/mol", file=sys.stderr,
              flush=True)
    if args.no_write:
        return
    out = args.out or RESULTS / "conformer_sampler_sweep"
    report = {"split": "QM9 validation split, first molecules", "stereo": args.stereo, "n_molecules": len(molecules),
              "k": args.conformers, "rows": rows}
    table = [[r["setting"], r["evaluations"], f"{100 * r['cov_r_mean']:.1f}%", f"{r['mat_r_mean']:.3f}",
              f"{r['mat_r_median']:.3f}", f"{100 * r['cov_p_mean']:.1f}%",
              f"{r['stereo_wrong_conformers']} of {r['conformers']}", f"{r['seconds_per_molecule_mean']:.2f}"]
             for r in rows]
    write_result(out, f"Sampler sweep on {len(molecules)} QM9 validation molecules", report,
                 [f"Input SMILES stereo: {args.stereo}.", "",
                  *md_table(["setting", "evaluations", "COV-R", "MAT-R mean (A)", "MAT-R median (A)", "COV-P",
                             "stereo wrong", "s / molecule"], table)])

if __name__ == "__main__":
    main()
