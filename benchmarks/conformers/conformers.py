"""Conformer generation on QM9 test molecules: ClofNet vs RDKit ETKDG, with and without MMFF relaxation.

    python -m benchmarks.conformers.conformers                                  # 200 molecules, all four methods
    python -m benchmarks.conformers.conformers --methods etkdg,etkdg+mmff -n 200
    python -m benchmarks.conformers.conformers --quick                          # 10 molecules, smoke run

For the first N molecules of the standard QM9 test split (never seen by the score model, which trains on
the training split), generate K conformers per molecule from the QM9 SMILES with each method, exactly as
``se3mol conformers`` does (same library function, same derived seeds), and score them against the DFT
geometry with COV-R at the threshold, MAT-R, COV-P and MAT-P (heavy-atom best RMSD, se3mol.conformers.metrics).

The reference conformer is the QM9 B3LYP geometry put on the SMILES molecule: connectivity is perceived
from the DFT coordinates (RDKit DetermineConnectivity) and the SMILES graph with hydrogens is matched into it
(every SMILES bond a perceived bond; the covalent-radius rule may add 1,3-contacts across strained rings,
which are allowed; of several mappings the one with the shortest bonds wins); the DFT coordinates are then
assigned through that match. A molecule whose relaxed DFT connectivity lacks a SMILES bond (QM9 has some)
has no meaningful reference and is skipped; skipped molecules are listed and replaced by the next test
molecules, so N molecules are always scored.

Per method: COV/MAT mean and median over the molecules that got conformers, COV-R counting failed
molecules as not covered, failures (with RDKit's reason), and seconds per molecule (generation and
relaxation, not scoring), on this machine (2 shared cores; timings are indicative, not controlled).
``clofnet`` and ``clofnet+relax`` need the score model; when it is not installed they are skipped with a note.

Writes ``benchmarks/conformers/results/conformers.json`` and ``conformers.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks._results import ROOT, describe_machine, read_result, results_dir, write_result

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from rdkit import Chem, rdBase  # noqa: E402
from rdkit.Chem import rdDetermineBonds  # noqa: E402
from rdkit.Geometry import Point3D  # noqa: E402

RESULTS = results_dir(__file__)
METHODS = ("etkdg", "etkdg+mmff", "clofnet", "clofnet+relax")
#: Split off into per_molecule/STEM.json.gz: conformer_seeds.py and stereo_spread_estimate.py read them back.
PER_MOLECULE = ("results.*.molecules",)


def reference_molecule(smiles: str, z: np.ndarray, pos: np.ndarray) -> Chem.Mol:
    """The SMILES molecule with hydrogens, carrying the DFT coordinates ``pos [N,3]`` (see the module docstring).

    Raises:
        ValueError: if the SMILES does not parse or its graph differs from the DFT connectivity.
    """
    from se3mol.conformers import molecule_from_smiles

    mol = molecule_from_smiles(smiles)
    dft = Chem.RWMol()
    for zi in z.tolist():
        dft.AddAtom(Chem.Atom(int(zi)))
    conf = Chem.Conformer(len(z))
    for i, (x, y, w) in enumerate(pos.tolist()):
        conf.SetAtomPosition(i, Point3D(x, y, w))
    dft.AddConformer(conf, assignId=True)
    rdDetermineBonds.DetermineConnectivity(dft)
    if dft.GetNumAtoms() != mol.GetNumAtoms():
        raise ValueError(f"DFT geometry has {dft.GetNumAtoms()} atoms, the SMILES {mol.GetNumAtoms()}")
    # Every SMILES bond must be a perceived DFT bond; extra perceived bonds are allowed, because the covalent-
    # radius rule also joins 1,3-atoms across strained small rings. Of the mappings, take the one with the
    # shortest SMILES bonds in the DFT geometry.
    matches = _connectivity(dft).GetSubstructMatches(_connectivity(mol), uniquify=False, maxMatches=10_000)
    if not matches:
        raise ValueError("the SMILES graph is not part of the DFT connectivity (bonds changed on relaxation)")
    bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in mol.GetBonds()]).reshape(-1, 2)  # [B,2]
    maps = np.asarray(matches)  # [M,N]: SMILES atom -> DFT atom
    lengths = np.linalg.norm(pos[maps[:, bonds[:, 0]]] - pos[maps[:, bonds[:, 1]]], axis=-1).sum(axis=1)  # [M]
    match = maps[int(np.argmin(lengths))]
    ref = Chem.Mol(mol)
    c = Chem.Conformer(ref.GetNumAtoms())
    for i, j in enumerate(match):
        c.SetAtomPosition(i, Point3D(*pos[j].tolist()))
    c.Set3D(True)
    ref.AddConformer(c, assignId=True)
    return ref


def _connectivity(mol: Chem.Mol) -> Chem.Mol:
    """Elements and single bonds only: the graph to match DFT atoms to SMILES atoms on."""
    g = Chem.RWMol()
    for a in mol.GetAtoms():
        atom = Chem.Atom(a.GetAtomicNum())
        atom.SetNoImplicit(True)
        g.AddAtom(atom)
    for b in mol.GetBonds():
        g.AddBond(b.GetBeginAtomIdx(), b.GetEndAtomIdx(), Chem.BondType.SINGLE)
    out = g.GetMol()
    out.UpdatePropertyCache(strict=False)
    return out


def reference_stereo_smiles(ref: Chem.Mol) -> str:
    """The SMILES of ``ref`` with the stereo of its DFT geometry (centres and double bonds perceived in 3D)."""
    m = Chem.Mol(ref)
    Chem.AssignStereochemistryFrom3D(m)
    return Chem.MolToSmiles(Chem.RemoveHs(m))


def pick_molecules(n: int, split: str = "test",
                   stereo: str = "smiles") -> tuple[list[tuple[str, str, Chem.Mol]], list[dict]]:
    """The first ``n`` molecules of a QM9 split with a usable reference: (QM9 id, SMILES, reference), and the
    skipped. Benchmarks score the test split; sampler settings are tuned on the validation split.

    ``stereo="smiles"`` gives QM9's SMILES as they are (they specify no stereo, so any stereoisomer is a valid
    answer, but only the reference's one can match it); ``"reference"`` gives the SMILES with the stereo of
    the DFT geometry, so that methods that honour stereo tags are asked for the reference's stereoisomer."""
    from se3mol.data.qm9 import SPLIT_SEED, load_qm9, standard_split

    q = load_qm9(verbose=True)
    test = standard_split(len(q), SPLIT_SEED)[split].tolist()
    picked, skipped = [], []
    for k in test:
        if len(picked) == n:
            break
        m = q.molecule(k)
        try:
            ref = reference_molecule(q.smiles[k], m.z, m.pos)
            picked.append((m.name, reference_stereo_smiles(ref) if stereo == "reference" else q.smiles[k], ref))
        except ValueError as exc:
            skipped.append({"id": m.name, "smiles": q.smiles[k], "reason": str(exc)})
    return picked, skipped


def make_method(name: str, args):
    """(ConformerMethod, relax) for a benchmark method name, or raise ModelUnavailableError."""
    from se3mol.conformers import EtkdgMethod, load_clofnet_method

    base, _, suffix = name.partition("+")
    relax = bool(suffix)
    method = EtkdgMethod() if base == "etkdg" else load_clofnet_method(
        args.model, preset=args.preset, steps=args.steps, precision=getattr(args, "precision", None) or "auto")
    if getattr(args, "oversample", None) is not None:
        method.oversample = args.oversample
    return method, relax


def run_method(name: str, method, relax: bool, molecules, k: int, seed: int, threshold: float) -> dict:
    from se3mol.conformers import SmilesInput, generate_one
    from se3mol.conformers.metrics import coverage_matching, heavy_atom_rmsd_matrix, split_conformers

    rows, failures, seconds = [], [], []
    for idx, (qm9_id, smiles, ref) in enumerate(molecules):
        result = generate_one(SmilesInput(idx, "qm9", smiles, qm9_id), method, k, seed=seed, relax=relax)
        seconds.append(result.seconds)
        if result.status == "error":
            failures.append({"id": qm9_id, "smiles": smiles, "error": result.error})
            continue
        try:
            d, _ = heavy_atom_rmsd_matrix(split_conformers(result.mol), [ref])
        except ValueError as exc:  # counted, never dropped: a scoring failure is a failure of the method here
            failures.append({"id": qm9_id, "smiles": smiles, "error": f"could not be scored: {exc}"})
            continue
        rows.append({"id": qm9_id, "smiles": smiles, "n_conformers": result.n_conformers,
                     **coverage_matching(d, threshold), "seconds": result.seconds,
                     "stereo_wrong": sum(bool(w) for w in result.stereo),
                     "stretched": sum(bool(b) for b in result.stretched),
                     "clashing": sum(bool(c) for c in result.clashes)})
        if (idx + 1) % 25 == 0:
            print(f"  {name}: {idx + 1}/{len(molecules)}", file=sys.stderr)

    def stat(key, f):
        values = [r[key] for r in rows]
        return f(values) if values else None

    n = len(molecules)
    return {
        "method": name,
        "settings": method.settings(),
        "relax": relax,
        "n_molecules": n,
        "n_generated": len(rows),
        "n_failed": len(failures),
        "cov_r_mean": stat("cov_r", statistics.fmean),
        "cov_r_counting_failures": (sum(r["cov_r"] for r in rows) / n) if n else None,
        "mat_r_mean": stat("mat_r", statistics.fmean),
        "mat_r_median": stat("mat_r", statistics.median),
        "cov_p_mean": stat("cov_p", statistics.fmean),
        "cov_p_median": stat("cov_p", statistics.median),
        "mat_p_mean": stat("mat_p", statistics.fmean),
        "mat_p_median": stat("mat_p", statistics.median),
        "stereo_wrong_conformers": sum(r["stereo_wrong"] for r in rows),
        "stretched_conformers": sum(r["stretched"] for r in rows),
        "clashing_conformers": sum(r["clashing"] for r in rows),
        "conformers": sum(r["n_conformers"] for r in rows),
        "seconds_per_molecule_mean": statistics.fmean(seconds) if seconds else None,
        "seconds_per_molecule_median": statistics.median(seconds) if seconds else None,
        "seconds_total": sum(seconds),
        "failures": failures,
        "molecules": rows,
    }


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def title(report: dict) -> str:
    return f"Conformer generation on QM9 test molecules (input stereo: {report.get('stereo', 'smiles')})"


def write_report(report: dict, out: Path) -> None:
    """``out.json`` and ``out.md``; the per-molecule lists go to ``per_molecule/``."""
    write_result(out, title(report), report, markdown(report), per_molecule=PER_MOLECULE)


def markdown(report: dict) -> list[str]:
    lines = [
        f"{report['n_molecules']} molecules of the standard QM9 test split, {report['k']} conformers each, "
        f"reference: the B3LYP geometry; heavy-atom best RMSD (RDKit GetBestRMS); COV threshold "
        f"{report['threshold']} A; {report.get('threads', '?')} torch thread(s).",
        "",
        "| method | COV-R | COV-R (failures as 0) | MAT-R mean (A) | MAT-R median (A) | COV-P | MAT-P mean (A) "
        "| stereo wrong | torn | clashing | s / molecule | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['method']} | {_f(r['cov_r_mean'] and 100 * r['cov_r_mean'], '.1f')}% "
            f"| {_f(r['cov_r_counting_failures'] and 100 * r['cov_r_counting_failures'], '.1f')}% "
            f"| {_f(r['mat_r_mean'], '.3f')} | {_f(r['mat_r_median'], '.3f')} "
            f"| {_f(r['cov_p_mean'] and 100 * r['cov_p_mean'], '.1f')}% | {_f(r['mat_p_mean'], '.3f')} "
            f"| {r.get('stereo_wrong_conformers', '-')} of {r.get('conformers', '-')} "
            f"| {r.get('stretched_conformers', '-')} | {r.get('clashing_conformers', '-')} "
            f"| {_f(r['seconds_per_molecule_mean'], '.3f')} | {r['n_failed']} of {r['n_molecules']} |")
    for s in report["skipped_methods"]:
        lines.append(f"| {s['method']} | skipped: {s['reason']} | | | | | | | | | | |")
    lines += ["", {"smiles": "Input: QM9's SMILES, which specify no stereo (any stereoisomer is a valid answer, "
                         "but only the reference's can match it).",
                   "reference": "Input: the SMILES with the stereo of the DFT reference (centres and double bonds "
                                "perceived from its 3D geometry)."}[report.get("stereo", "smiles")],
              "\"stereo wrong\": conformers with a stereo element the SMILES specifies the wrong way round. "
              "\"torn\": conformers with a bond longer than its atoms' covalent radii plus 0.45 A. \"clashing\": "
              "conformers with two atoms 3 or more bonds apart closer than half their van der Waals radii's sum "
              "(a column added after some of these results were measured: '-' where it was not counted).",
              "", "Oversampling (`--oversample F`: ceil(F K) samples, K kept: the least strained, then the most "
              "diverse; rows marked \"energy rule\", measured before, kept the K of lowest MMFF94 energy as sampled): "
              + ", ".join([f"{r['method']} {r['settings'].get('oversample', 1):g}" for r in report["results"]
                           if "oversample" not in r["method"]] or ["as the method names say"])
              + " (1: every sample kept; results without the setting predate it and sampled K).",
              "", "COV-R and MAT over the molecules that got conformers; \"failures as 0\" counts the failed "
              "ones as not covered. With one reference per molecule, COV-R of a molecule is 0 or 1 and COV-P is "
              "the fraction of its generated conformers within the threshold.", ""]
    if report["skipped_reference"]:
        lines.append(f"{len(report['skipped_reference'])} test molecule(s) skipped because their DFT "
                     "connectivity lacks a bond of the SMILES (replaced by the next ones):")
        lines += [f"- {s['id']} `{s['smiles']}`: {s['reason']}" for s in report["skipped_reference"]]
        lines.append("")
    for r in report["results"]:
        if r["failures"]:
            lines.append(f"Failures of {r['method']}:")
            lines += [f"- {x['id']} `{x['smiles']}`: {x['error']}" for x in r["failures"]]
            lines.append("")
    return lines


def join_reports(paths: list[Path], out: Path) -> None:
    """One report from several runs of this script on the same molecules and settings (methods in order)."""
    reports = [read_result(p) for p in paths]
    first = reports[0]
    for p, r in zip(paths[1:], reports[1:], strict=True):
        for key in ("n_molecules", "k", "threshold", "seed", "split", "stereo"):
            if r.get(key) != first.get(key):
                raise SystemExit(f"{p}: {key} is {r.get(key)!r}, {paths[0]} has {first.get(key)!r}; cannot join")
    suffix = " (run side by side, joined with --join)"
    commands = list(dict.fromkeys(c for r in reports for c in r.get("commands", [r["command"].removesuffix(suffix)])))
    joined = {**first, "commands": commands, "command": "; ".join(commands) + suffix,
              "machine": "; ".join(dict.fromkeys(describe_machine(r["machine"]) for r in reports)),
              "skipped_methods": [s for r in reports for s in r["skipped_methods"]],
              "results": [x for r in reports for x in r["results"]]}
    write_report(joined, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--molecules", type=int, default=200, help="test molecules to score")
    p.add_argument("-k", "--conformers", type=int, default=10, help="conformers per molecule")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="score model for clofnet (default: the shipped one)")
    p.add_argument("--preset", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--stereo", choices=("smiles", "reference"), default="smiles",
                   help="SMILES as in QM9 (no stereo; default) or with the stereo of the DFT reference")
    p.add_argument("--oversample", type=float, default=None,
                   help="sample this many times K conformers and keep K, the least strained, then the most diverse "
                        "(default: the method's, as `se3mol conformers --oversample`); rows are labelled with it")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default=None,
                   help="clofnet's score network arithmetic (default: auto, as `se3mol conformers`); rows are "
                        "labelled with the precision it resolves to")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1; `se3mol conformers` uses all cores, 2 on this machine)")
    p.add_argument("--quick", action="store_true", help="10 molecules, no results written")
    p.add_argument("--out", type=Path, default=RESULTS / "conformers",
                   help="results file stem: writes STEM.json and STEM.md (a dot in it is kept)")
    p.add_argument("--join", type=Path, nargs="+", default=None, metavar="JSON",
                   help="join the results of runs on the same molecules (e.g. methods run as parallel processes) "
                        "into --out; nothing is measured")
    args = p.parse_args()
    if args.join:
        join_reports(args.join, args.out)
        return
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    from se3mol.runtime import keep_freed_memory

    keep_freed_memory()  # as `se3mol conformers` does; without it, timings depend on what the process did first
    from se3mol.conformers import ModelUnavailableError

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    n = 10 if args.quick else args.molecules
    rdBase.DisableLog("rdApp.warning")
    molecules, skipped = pick_molecules(n, stereo=args.stereo)
    print(f"{len(molecules)} molecules ({len(skipped)} skipped: DFT connectivity lacks a SMILES bond)",
          file=sys.stderr)
    results, skipped_methods = [], []
    for name in methods:
        try:
            method, relax = make_method(name, args)
        except ModelUnavailableError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            # paths relative to the repository, so committed results do not name this machine's directories
            skipped_methods.append({"method": name, "reason": str(exc).replace(f"{ROOT}/", "")})
            continue
        t0 = time.perf_counter()
        label = name if args.oversample is None else f"{name}, oversample {args.oversample:g}"
        if args.precision is not None and not name.startswith("etkdg"):
            label += f", {method.sampler_settings.precision}"
        r = run_method(label, method, relax, molecules, args.conformers, args.seed, args.threshold)
        print(f"{name}: COV-R {_f(r['cov_r_mean'], '.3f')}, MAT-R {_f(r['mat_r_mean'], '.3f')} "
              f"(median {_f(r['mat_r_median'], '.3f')}), {r['n_failed']} failed, "
              f"{_f(r['seconds_per_molecule_mean'], '.3f')} s/molecule ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr)
        results.append(r)
    report = {
        "threads": args.threads,
        "n_molecules": len(molecules),
        "k": args.conformers,
        "threshold": args.threshold,
        "seed": args.seed,
        "stereo": args.stereo,
        "split": "standard QM9 test split (se3mol.data.qm9.standard_split, seed 42), first molecules in split order",
        "skipped_reference": skipped,
        "skipped_methods": skipped_methods,
        "results": results,
    }
    if args.quick:
        return
    write_report(report, args.out)


if __name__ == "__main__":
    main()
