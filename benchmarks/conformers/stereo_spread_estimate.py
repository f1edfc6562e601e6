"""Would spreading conformers over the stereoisomers of a stereo-free SMILES raise COV-R? An estimate.

    python -m benchmarks.conformers.stereo_spread_estimate

QM9's SMILES specify no stereo, and the score model, left free, lands on whichever stereoisomer it prefers,
which is not always the one of the DFT reference. One remedy (OpenEye's "flipper") enumerates the
stereoisomers the SMILES allows (RDKit ``EnumerateStereoisomers``, unassigned elements only) and gives each
isomer a share of the K conformers. This script estimates, before anyone builds it, what that would do to
COV-R on the 200 test molecules of ``benchmarks/conformers/results/conformers*.json``, from conformers already
generated:

- ``conformers.json`` (clofnet, QM9 SMILES, stereo free): per molecule, how many of the 10 conformers lie
  within the threshold of the reference (``cov_p`` x 10);
- ``conformers_reference_stereo.json`` (clofnet, asked for the reference's stereo): the same count when
  the sampler is asked for the right isomer.

With ``F`` conformers left free and ``K - F`` spread over the ``N`` isomers, the reference isomer gets
``(K - F) // N`` or one more of them (or, when ``N > K - F``, one with probability ``(K - F) / N``). A
molecule is covered when a draw of ``F`` of the free conformers or a draw of its share of the
reference-stereo conformers has a hit (hypergeometric, the two runs independent). Isomers that cannot exist
(small fused rings) take conformers and give nothing, as they would; the time they cost is not counted.
Molecules with no unspecified stereo keep all ``K`` conformers free.

Also reports how many isomers the enumeration gives, and how an ETKDG embedding screen for impossible
isomers (RDKit's ``tryEmbedding`` idea, with few attempts to stay cheap) fares on these molecules: how long
it takes, how often it rejects every isomer, and how often it keeps the reference's.

Writes ``benchmarks/conformers/results/stereo_spread_estimate.{json,md}``.
"""

from __future__ import annotations

import argparse
import time
from math import comb
from pathlib import Path

import numpy as np
from rdkit import Chem, RDLogger
from rdkit.Chem import AllChem
from rdkit.Chem.EnumerateStereoisomers import EnumerateStereoisomers, StereoEnumerationOptions

from benchmarks._results import read_result, results_dir, write_result

RESULTS = results_dir(__file__)


def _rows(path: Path, method: str) -> dict[str, dict]:
    report = read_result(path)  # with its per-molecule lists
    (result,) = [r for r in report["results"] if r["method"] == method]
    return {m["id"]: m for m in result["molecules"]}


def hit(hits: int, draw: int, k: int) -> float:
    """Probability that ``draw`` of ``k`` conformers, ``hits`` of which are within the threshold, include one."""
    draw = min(draw, k)
    return 1.0 - comb(k - hits, draw) / comb(k, draw)


def isomers(smiles: str) -> list[Chem.Mol]:
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    return list(EnumerateStereoisomers(mol, options=StereoEnumerationOptions(onlyUnassigned=True, unique=True)))


def estimate(free: dict, ref: dict, n_isomers: dict, k: int, n_free: int) -> float:
    covered = []
    for mid, row in free.items():
        s_free = round(row["cov_p"] * row["n_conformers"])
        n = n_isomers[mid]
        if n <= 1 or n_free >= k:
            covered.append(hit(s_free, k, k))
            continue
        s_ref = round(ref[mid]["cov_p"] * ref[mid]["n_conformers"])
        spread = k - n_free
        if n > spread:
            p_ref = spread / n * hit(s_ref, 1, k)
        else:
            base, extra = divmod(spread, n)
            p_ref = extra / n * hit(s_ref, base + 1, k) + (1 - extra / n) * hit(s_ref, base, k)
        p_free = hit(s_free, n_free, k) if n_free else 0.0
        covered.append(1 - (1 - p_free) * (1 - p_ref))
    return float(np.mean(covered))


def embedding_screen(smiles: dict[str, str], reference: dict[str, str], attempts: int) -> dict:
    t0 = time.perf_counter()
    none_kept = ref_kept = ref_enumerated = multi = 0
    for mid, smi in smiles.items():
        isos = isomers(smi)
        if len(isos) <= 1:
            continue
        multi += 1
        ref_enumerated += Chem.CanonSmiles(reference[mid]) in {Chem.MolToSmiles(Chem.RemoveHs(i)) for i in isos}
        kept = []
        for iso in isos:
            params = AllChem.ETKDGv3()
            params.randomSeed, params.maxIterations = 1, attempts
            if AllChem.EmbedMolecule(Chem.Mol(iso), params) >= 0:
                kept.append(Chem.MolToSmiles(Chem.RemoveHs(iso)))
        none_kept += not kept
        ref_kept += Chem.CanonSmiles(reference[mid]) in kept
    return {"attempts": attempts, "molecules_with_isomers": multi, "every_isomer_rejected": none_kept,
            "reference_isomer_enumerated": ref_enumerated, "reference_isomer_kept": ref_kept,
            "seconds_per_molecule": (time.perf_counter() - t0) / len(smiles)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--free", type=Path, default=RESULTS / "conformers.json")
    p.add_argument("--reference", type=Path, default=RESULTS / "conformers_reference_stereo.json")
    p.add_argument("--method", default="clofnet")
    p.add_argument("--out", type=Path, default=RESULTS / "stereo_spread_estimate")
    args = p.parse_args()
    RDLogger.DisableLog("rdApp.*")
    free, ref = _rows(args.free, args.method), _rows(args.reference, args.method)
    if set(free) != set(ref):
        raise SystemExit("the two results files score different molecules")
    k = {row["n_conformers"] for row in [*free.values(), *ref.values()]}
    if len(k) != 1:
        raise SystemExit(f"molecules with different numbers of conformers: {sorted(k)}")
    (k,) = k
    n_isomers = {mid: len(isomers(row["smiles"])) for mid, row in free.items()}
    counts = np.bincount(list(n_isomers.values()))
    rows = [{"free": f, "spread": k - f, "cov_r_estimate": estimate(free, ref, n_isomers, k, f)}
            for f in range(k, -1, -1)]
    screens = [embedding_screen({m: r["smiles"] for m, r in free.items()},
                                {m: r["smiles"] for m, r in ref.items()}, a) for a in (1, 3)]
    report = {"free": str(args.free), "reference": str(args.reference), "method": args.method, "k": k,
              "n_molecules": len(free),
              "isomer_counts": {int(n): int(c) for n, c in enumerate(counts) if c},
              "estimates": rows, "embedding_screens": screens}
    lines = ["Estimated from the conformers of the stereo-free and reference-stereo runs (see the script's "
             "docstring); the first row is the measured stereo-free COV-R.", "",
             "| free | spread over isomers | COV-R (estimate) |", "|---|---|---|"]
    lines += [f"| {r['free']} | {r['spread']} | {100 * r['cov_r_estimate']:.1f}% |" for r in rows]
    best = max(rows, key=lambda r: r["cov_r_estimate"])
    lines += ["", f"Highest estimate: {best['free']} free, {best['spread']} spread "
              f"({100 * best['cov_r_estimate']:.1f}%)."]
    lines += ["", "Stereoisomers per molecule (RDKit EnumerateStereoisomers, unassigned elements): "
              + ", ".join(f"{n}: {c}" for n, c in report["isomer_counts"].items()) + ".", "",
              "ETKDG embedding screen for impossible isomers:", "",
              "| attempts per isomer | molecules with >1 isomer | every isomer rejected | reference isomer enumerated "
              "| reference isomer kept | s / molecule |", "|---|---|---|---|---|---|"]
    lines += [f"| {s['attempts']} | {s['molecules_with_isomers']} | {s['every_isomer_rejected']} | "
              f"{s['reference_isomer_enumerated']} | {s['reference_isomer_kept']} | {s['seconds_per_molecule']:.3f} |"
              for s in screens]
    lines += ["", "Isomers are compared as canonical isomeric SMILES. \"Enumerated\" can fall short of the molecules "
              "with isomers where the enumeration assigns an element (e.g. a ring nitrogen) that the reference's "
              "perceived stereo leaves unassigned; those molecules count as not kept either."]
    write_result(args.out, f"Spreading conformers over stereoisomers: estimated COV-R ({len(free)} QM9 test "
                 f"molecules, {k} conformers, {args.method})", report, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
