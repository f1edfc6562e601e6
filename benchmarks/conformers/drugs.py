"""Conformers of drug-like molecules against GFN2-xTB reference ensembles (GEOM-Drugs protocols).

    python -m se3mol.conformers.drugs build data/drugs/test --split test -n 100     # the reference set, once
    python -m benchmarks.conformers.drugs --workers 2

For every molecule of the benchmark set (built from MOSES's test file by :mod:`se3mol.conformers.drugs`, never
trained on) and every method, this generates ``2K`` conformers, ``K`` being the size of the molecule's reference
ensemble (GEOM-Drugs' protocol, as in ConfGF, GeoDiff and ClofNet), exactly as ``se3mol conformers`` does, and
reports, over molecules:

- COV-R and MAT-R (heavy-atom best RMSD, :mod:`se3mol.conformers.metrics`) at 1.25 A (GEOM-Drugs' threshold) and
  0.75 A; a molecule a method fails on counts as COV 0 and is left out of MAT (the failures are counted);
- the fraction of conformers with clashing atoms and with a torn bond, as written (after relaxation when relaxed);
- the GFN2-xTB energy of the conformers as written relative to the reference ensemble's minimum (kcal/mol):
  median over the molecule's conformers, and its lowest; medians over molecules;
- seconds per molecule (generation and relaxation, without the xTB scoring), and per 10 conformers.

Methods: ``etkdg``, ``etkdg+mmff`` (``--relax``), ``clofnet``, ``clofnet+mmff`` by default; ``+xtb`` for
``--relax xtb``; ``hybrid``; ``:K`` after the name samples K times as many and keeps the least strained, most
diverse (``--oversample K``), e.g. ``hybrid:2+mmff``. Writes ``benchmarks/conformers/results/drugs.{json,md}``
(per molecule in ``per_molecule/``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks._results import ROOT, md_table, results_dir, write_result

os.environ.setdefault("OMP_NUM_THREADS", "1")

RESULTS = results_dir(__file__)
#: The benchmark set as built (``python -m se3mol.conformers.drugs build data/drugs/test --split test -n 100``),
#: committed so that a clean clone scores against the same ensembles without an hour of GFN2-xTB.
SHIPPED_REFERENCE = Path(__file__).resolve().parent / "reference" / "drugs-test.tar.gz"
DEFAULT_REFERENCE = ROOT / "data" / "drugs" / "test"
DEFAULT_METHODS = ("etkdg", "etkdg+mmff", "clofnet", "clofnet+mmff")
THRESHOLDS = (1.25, 0.75)


def _one(task: tuple[int, dict, str, str, str | None, int, int | None, float | None, bool, dict]) -> dict:
    """Generate and score one molecule with one method (in a worker process)."""
    import numpy as np
    import torch
    from rdkit import rdBase

    from se3mol.conformers import SmilesInput, coverage_matching, generate_one, heavy_atom_rmsd_matrix, make_method
    from se3mol.conformers.drugs import read_ensembles
    from se3mol.conformers.methods import with_sampler_settings
    from se3mol.conformers.metrics import split_conformers
    from se3mol.conformers.xtb import EH_TO_KCAL, xtb_energy

    torch.set_num_threads(1)
    rdBase.DisableLog("rdApp.warning")
    row, info, spec, reference_dir, model, seed, n, start_sigma, energies_too, sampler = task
    base, _, relax = spec.partition("+")
    base, _, oversample = base.partition(":")
    options = {"model": model} if base in ("clofnet", "hybrid") and model else {}
    if base == "hybrid" and start_sigma is not None:
        options["start_sigma"] = start_sigma
    method = make_method(base, **options)
    if sampler:
        method = with_sampler_settings(method, sampler)
    if oversample:
        method.oversample = float(oversample)
    _, _, ref = next(read_ensembles(reference_dir, [row]))
    k = n or 2 * ref.GetNumConformers()
    r = generate_one(SmilesInput(0, "benchmark", info["smiles"], f"moses-{row}"), method, k, seed=seed,
                     relax=relax or None)
    out = {"row": row, "method": spec, "oversample": getattr(method, "oversample", 1.0), "smiles": info["smiles"],
           "reference": ref.GetNumConformers(), "asked": k,
           "seconds": r.seconds, "heavy_atoms": ref.GetNumHeavyAtoms(), "atoms": ref.GetNumAtoms()}
    if r.status == "error" or r.mol is None or r.n_conformers == 0:
        return {**out, "error": r.error or "no conformer"}
    d, _ = heavy_atom_rmsd_matrix(split_conformers(r.mol), split_conformers(ref))
    for t in THRESHOLDS:
        out[f"cov_mat_{t}"] = coverage_matching(d, t)
    z = np.array([a.GetAtomicNum() for a in r.mol.GetAtoms()])
    e_min = info["energies_eh"][0]
    if not energies_too:
        energies = []
    elif relax == "xtb" and r.relax is not None:
        energies = [o.energy_after for o in r.relax]
    else:
        energies = []
        for conf in r.mol.GetConformers():
            try:
                energies.append(xtb_energy(z, conf.GetPositions()))
            except ValueError:  # SCF failure: atoms on top of each other; counted as clashing already
                energies.append(float("nan"))
    rel = (np.array(energies) - e_min) * EH_TO_KCAL
    ok = rel[np.isfinite(rel)]
    out.update(conformers=r.n_conformers, clashing=sum(bool(c) for c in r.clashes),
               torn=sum(bool(b) for b in r.stretched), xtb_failed=int((~np.isfinite(rel)).sum()),
               rel_median=float(np.median(ok)) if len(ok) else None, rel_lowest=float(ok.min()) if len(ok) else None,
               extrapolation="; ".join(r.extrapolation) or "none")
    return out


def summarise(rows: list[dict], method: str) -> dict:
    mine = [r for r in rows if r["method"] == method]
    done = [r for r in mine if "error" not in r]
    s: dict = {"method": method, "oversample": mine[0]["oversample"] if mine else None, "molecules": len(mine),
               "failed": len(mine) - len(done)}
    for t in THRESHOLDS:
        covs = [r[f"cov_mat_{t}"]["cov_r"] if "error" not in r else 0.0 for r in mine]
        mats = [r[f"cov_mat_{t}"]["mat_r"] for r in done]
        s[f"COV-R@{t}"] = {"mean": statistics.mean(covs), "median": statistics.median(covs)} if covs else None
        if t == THRESHOLDS[0]:
            s["mat_r"] = {"mean": statistics.mean(mats), "median": statistics.median(mats)} if mats else None
    confs = sum(r["conformers"] for r in done)
    s["conformers"] = confs
    s["clashing_rate"] = sum(r["clashing"] for r in done) / confs if confs else None
    s["torn_rate"] = sum(r["torn"] for r in done) / confs if confs else None
    meds = [r["rel_median"] for r in done if r["rel_median"] is not None]
    lows = [r["rel_lowest"] for r in done if r["rel_lowest"] is not None]
    s["xtb_rel_median"] = statistics.median(meds) if meds else None
    s["xtb_rel_lowest"] = statistics.median(lows) if lows else None
    s["seconds_per_molecule"] = statistics.mean(r["seconds"] for r in mine) if mine else None
    s["seconds_per_10_conformers"] = statistics.mean(10 * r["seconds"] / r["asked"] for r in mine) if mine else None
    return s


def markdown(report: dict) -> list[str]:
    def f(x, spec=".3f"):
        return "n/a" if x is None else format(x, spec)

    rows = []
    for s in report["summary"]:
        over = s.get("oversample") or 1.0
        name = s["method"] if over == 1 or ":" in s["method"] else f"{s['method']} (x{over:g})"
        rows.append([name, f"{s['molecules'] - s['failed']}/{s['molecules']}",
                     f(s["COV-R@1.25"]["mean"], ".1%") if s["COV-R@1.25"] else "n/a",
                     f(s["COV-R@1.25"]["median"], ".1%") if s["COV-R@1.25"] else "n/a",
                     f(s["mat_r"]["mean"]) if s["mat_r"] else "n/a", f(s["mat_r"]["median"]) if s["mat_r"] else "n/a",
                     f(s["COV-R@0.75"]["mean"], ".1%") if s["COV-R@0.75"] else "n/a",
                     f(s["clashing_rate"], ".1%"), f(s["torn_rate"], ".1%"), f(s["xtb_rel_median"], ".1f"),
                     f(s["xtb_rel_lowest"], ".1f"), f(s["seconds_per_molecule"], ".2f"),
                     f(s["seconds_per_10_conformers"], ".2f")])
    lines = md_table(["method", "molecules done", "COV-R 1.25 A mean", "median", "MAT-R mean (A)", "median",
                      "COV-R 0.75 A mean", "clashing conformers", "torn", "xTB dE median (kcal/mol)",
                      "xTB dE lowest", "s / molecule", "s / 10 conformers"], rows)
    ref = report["reference"]
    split = ref["settings"].get("split", "test")
    lines += ["", f"Reference: {ref['molecules']} MOSES {split} molecules ({ref['heavy_atoms_median']} heavy atoms "
              f"median, {ref['heavy_atoms_max']} max), GFN2-xTB ensembles of "
              f"{ref['conformers_mean']:.1f} conformers on "
              f"average (`{ref['folder']}`, settings {ref['settings']}). Each method generates twice the reference "
              "count. COV-R counts a failed molecule as 0. xTB dE: GFN2-xTB energy of the conformers as written "
              "minus the reference ensemble's minimum; per molecule the median and the lowest, then the median "
              "over molecules. (xK: the method's own oversampling, K times the conformers generated and the least "
              "strained, most diverse kept.) Seconds: one process per molecule, 1 thread, "
              f"{report['workers']} worker(s) side by side. Score model (clofnet, hybrid): {report['model']}"
              + (f"; hybrid's start sigma {report['start_sigma']} A" if report.get("start_sigma") else "")
              + (f"; sampler settings {report['sampler']}" if report.get("sampler") else "") + "."]
    return lines


def parse_settings(items: list[str]) -> dict[str, float | int]:
    """``KEY=VALUE`` sampler settings (numbers; whole ones as int) as a dict; exits with a message on a malformed
    one or a key that is not a :class:`~se3mol.conformers.sampler.SamplerSettings` field."""
    from dataclasses import fields

    from se3mol.conformers.sampler import SamplerSettings

    known = {f.name for f in fields(SamplerSettings)}
    out: dict[str, float | int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in known:
            sys.exit(f"--sampler {item!r}: no sampler setting {key!r} (settings: {', '.join(sorted(known))})")
        try:
            out[key] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            sep = ""
        if not sep:
            sys.exit(f"--sampler takes KEY=NUMBER, got {item!r}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE,
                   help="the benchmark set's build folder (python -m se3mol.conformers.drugs build ...)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help="comma-separated METHOD[:OVERSAMPLE][+RELAX], e.g. etkdg,hybrid:2,hybrid+mmff")
    p.add_argument("--model", default=None, help="score model for clofnet (default: the shipped default)")
    p.add_argument("--limit", type=int, default=None, help="only the first N molecules (by row)")
    p.add_argument("-n", type=int, default=None, help="conformers per molecule (default: twice the reference's)")
    p.add_argument("--start-sigma", type=float, default=None, help="hybrid's starting noise (default: its own)")
    p.add_argument("--sampler", action="append", default=[], metavar="KEY=VALUE",
                   help="a score-model sampler setting for clofnet and hybrid (SamplerSettings), e.g. temperature=0")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-energy", action="store_true", help="skip the GFN2-xTB scoring of every conformer (quick)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "drugs")
    args = p.parse_args()
    import json

    from se3mol.conformers.drugs import read_ensembles

    if args.reference == DEFAULT_REFERENCE and not DEFAULT_REFERENCE.exists():
        import tarfile

        with tarfile.open(SHIPPED_REFERENCE) as tar:
            tar.extractall(DEFAULT_REFERENCE.parent.parent, filter="data")
        print(f"unpacked the benchmark set {SHIPPED_REFERENCE.name} into {DEFAULT_REFERENCE}", file=sys.stderr)
    settings = json.loads((args.reference / "settings.json").read_text())
    infos = [(row, info, mol.GetNumHeavyAtoms(), mol.GetNumConformers())
             for row, info, mol in read_ensembles(args.reference)][: args.limit]
    if not infos:
        sys.exit(f"no reference ensembles in {args.reference}: build them with python -m se3mol.conformers.drugs")
    methods = args.methods.split(",")
    sampler = parse_settings(args.sampler)
    tasks = [(row, info, m, str(args.reference), args.model, args.seed, args.n, args.start_sigma, not args.no_energy,
              sampler)
             for m in methods for row, info, _, _ in infos]
    rows: list[dict] = []
    with ProcessPoolExecutor(args.workers) as pool:
        for r in pool.map(_one, tasks, chunksize=1):
            rows.append(r)
            print(f"[{len(rows)}/{len(tasks)}] {r['method']} row {r['row']}: "
                  + (f"error {r['error']}" if "error" in r else
                     f"COV-R {r['cov_mat_1.25']['cov_r']:.2f} MAT-R {r['cov_mat_1.25']['mat_r']:.2f} "
                     f"{r['seconds']:.1f} s"), file=sys.stderr, flush=True)
    heavy = [h for _, _, h, _ in infos]
    report = {"reference": {"folder": str(args.reference.relative_to(ROOT) if args.reference.is_relative_to(ROOT)
                                          else args.reference),
                            "settings": {k: settings[k] for k in ("split", "pool", "keep", "window", "rmsd", "method")
                                         if k in settings},
                            "molecules": len(infos), "heavy_atoms_median": statistics.median(heavy),
                            "heavy_atoms_max": max(heavy),
                            "conformers_mean": statistics.mean(c for _, _, _, c in infos)},
              "model": args.model or "default", "start_sigma": args.start_sigma, "sampler": sampler, "seed": args.seed,
              "workers": args.workers,
              "summary": [summarise(rows, m) for m in methods], "molecules": rows}
    lines = markdown(report)
    write_result(args.out, f"Drug-like conformers against GFN2-xTB ensembles ({len(infos)} molecules)",
                 report, lines, per_molecule=["molecules"])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
