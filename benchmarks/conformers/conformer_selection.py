"""Which K of M sampled conformers to keep: does ranking by MMFF94 energy raise coverage?

    python -m benchmarks.conformers.conformer_selection -n 300 -m 30 [--split val|test] [--seed 0] [--offset 0]
        [--out STEM]

With QM9's stereo-free SMILES: sample M conformers per molecule with a score model (``--oversample 1``,
``--seed``, default 0, as ``se3mol conformers`` does), score every one against the DFT geometry (heavy-atom
best RMSD) and compute its MMFF94 energy as sampled and after minimisation (``--relax``). Then estimate, for
K = 10 kept conformers, the *expected* COV-R at 0.5 A and MAT-R of each way of choosing them, averaged over
``--draws`` random subsets of the M samples per molecule (so that the luck of one draw of 10, which moves a
200-molecule COV-R by a point or two, averages out):

- ``K samples``: K random samples, no choice (what ``--oversample 1`` gives);
- ``K of M' by energy as sampled``: M' random samples, the K of lowest MMFF94 energy as sampled kept (the rule
  of ``--oversample M'/K`` before the one below);
- ``K of M' by minimised energy``: the K whose minimised energy is lowest;
- ``K of M': least strained, then most diverse``: what ``se3mol.conformers.select.select_conformers`` does
  (``--oversample M'/K``): the most strained half of the M' - K surplus dropped, then farthest-point selection
  on the samples' pairwise heavy-atom best RMSD, from the least strained on. Needs the pairwise RMSDs, which
  runs before this rule existed did not record.

The differences to ``K samples`` are paired (same molecules, same samples), with their standard error over
molecules. Tune on the validation split (the default); ``--split test`` measures. Writes ``STEM.json`` and
``STEM.md`` (default ``benchmarks/conformers/results/conformer_selection``), and the per-molecule RMSDs and
energies to ``per_molecule/STEM.json.gz`` beside them (not kept in git: megabytes), so that other rules can be
tried without sampling again (``--join``, ``--baseline``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from benchmarks._results import invocation, read_result, results_dir, write_result
from benchmarks.conformers.conformers import pick_molecules

RESULTS = results_dir(__file__)


def sample_and_score(molecules, m: int, model: str | None, seed: int = 0, precision: str = "float32") -> list[dict]:
    from rdkit import Chem

    from se3mol.conformers import SmilesInput, generate_one, load_clofnet_method, relax_mmff
    from se3mol.conformers.metrics import heavy_atom_rmsd_matrix, split_conformers

    method = load_clofnet_method(model, precision=precision)
    method.oversample = 1.0
    rows = []
    for idx, (qm9_id, smiles, ref) in enumerate(molecules):
        result = generate_one(SmilesInput(idx, "qm9", smiles, qm9_id), method, m, seed=seed)
        if result.status == "error":
            rows.append({"id": qm9_id, "smiles": smiles, "error": result.error})
            continue
        confs = split_conformers(result.mol)
        d, _ = heavy_atom_rmsd_matrix(confs, [ref])
        pair, _ = heavy_atom_rmsd_matrix(confs, confs)
        relaxed = Chem.Mol(result.mol)
        outcomes = relax_mmff(relaxed)
        rows.append({"id": qm9_id, "smiles": smiles, "rmsd": np.asarray(d)[:, 0].tolist(),
                     "energy_sampled": [o.energy_before for o in outcomes],
                     "energy_minimised": [o.energy_after for o in outcomes],
                     "pair_rmsd": np.round(np.asarray(pair), 4).tolist()})
        if (idx + 1) % 25 == 0:
            print(f"  {idx + 1}/{len(molecules)}", file=sys.stderr, flush=True)
    return rows


def expected_best(row: dict, k: int, pool: int, key: str | None, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Best RMSD of the K kept conformers ``[draws]``: each draw takes ``pool`` random samples of the molecule and
    keeps the K of lowest ``row[key]`` (``key=None``: ``pool == K``, no choice; ``"diverse"``: what
    ``se3mol.conformers.select.select_conformers`` does, the least strained half of the surplus dropped and
    :func:`farthest_points` selection from the rest)."""
    rmsd = np.asarray(row["rmsd"])
    pools = np.argsort(rng.random((draws, len(rmsd))), axis=1)[:, :pool]  # [draws, pool] random subsets
    if key is not None:
        energy = np.asarray(row["energy_sampled" if key == "diverse" else key], dtype=np.float64)[pools]
        energy[~np.isfinite(energy)] = np.inf
        # "diverse" keeps the least strained K + ceil((pool - K) / 2) for farthest-point selection
        keep = k + (pool - k + 1) // 2 if key == "diverse" else k
        pools = np.take_along_axis(pools, np.argsort(energy, axis=1, kind="stable")[:, :keep], axis=1)
    if key == "diverse":
        pools = farthest_points(pools, np.asarray(row["pair_rmsd"]), np.asarray(row["energy_sampled"]), k)
    return rmsd[pools].min(axis=1)


def farthest_points(pools: np.ndarray, pair: np.ndarray, energy: np.ndarray, k: int) -> np.ndarray:
    """For each row of ``pools [draws, pool]`` (sample indices), the K samples chosen greedily for diversity:
    first the one of lowest MMFF94 energy as sampled, then each time the one farthest (heavy-atom best RMSD)
    from those already chosen. ``[draws, K]``."""
    energy = np.where(np.isfinite(energy), energy, np.inf)
    draws = np.arange(len(pools))
    first = np.argmin(energy[pools], axis=1)
    chosen = [pools[draws, first]]
    nearest = pair[pools, chosen[0][:, None]]  # [draws, pool]: distance to the closest chosen sample
    nearest[draws, first] = -1.0  # never chosen twice, even among identical samples
    for _ in range(k - 1):
        pick = np.argmax(nearest, axis=1)
        chosen.append(pools[draws, pick])
        nearest = np.minimum(nearest, pair[pools, chosen[-1][:, None]])
        nearest[draws, pick] = -1.0
    return np.stack(chosen, axis=1)


def summarise(rows: list[dict], k: int, threshold: float, draws: int, seed: int = 0) -> list[dict]:
    scored = [r for r in rows if "rmsd" in r]
    m = min(len(r["rmsd"]) for r in scored)
    choices = [(f"{k} samples", k, None)]
    for pool in (12, 15, 20, 30, 40):
        if k < pool <= m:
            choices.append((f"{k} of {pool} by energy as sampled", pool, "energy_sampled"))
    for pool in (15, 20):
        if k < pool <= m:
            choices.append((f"{k} of {pool} by minimised energy", pool, "energy_minimised"))
    if all("pair_rmsd" in r for r in scored):
        for pool in (12, 15, 20, 30, 40):
            if k < pool <= m:
                choices.append((f"{k} of {pool}: least strained, then most diverse", pool, "diverse"))
    table, base, by_energy = [], None, {}
    for name, pool, key in choices:
        rng = np.random.default_rng(seed)
        best = np.stack([expected_best(r, k, pool, key, draws, rng) for r in scored])  # [molecules, draws]
        cov = (best < threshold).mean(axis=1)  # expected COV-R per molecule
        mat = best.mean(axis=1)
        if base is None:
            base = cov
        diff = cov - base
        table.append({"rule": name, "samples": pool, "cov_r": float(cov.mean()), "mat_r_mean": float(mat.mean()),
                      "mat_r_median": float(np.median(mat)), "cov_r_minus_samples": float(diff.mean()),
                      "cov_r_minus_samples_se": float(diff.std(ddof=1) / np.sqrt(len(diff))),
                      "per_molecule": {r["id"]: [c, x]
                                       for r, c, x in zip(scored, cov.tolist(), mat.tolist(), strict=True)}})
        if key == "energy_sampled":
            by_energy[pool] = cov
        elif key == "diverse" and pool in by_energy:  # the same random subsets (same rng seed): paired
            d = cov - by_energy[pool]
            table[-1].update(cov_r_minus_energy=float(d.mean()), cov_r_minus_energy_se=float(d.std(ddof=1)
                                                                                               / np.sqrt(len(d))))
    return table


def versus_baseline(table: list[dict], baseline: list[dict]) -> None:
    """Add to each rule of ``table`` its expected COV-R and MAT-R minus the same rule's in ``baseline`` (another
    run's table, e.g. float32 against bfloat16), paired over the molecules both runs scored."""
    theirs = {t["rule"]: t["per_molecule"] for t in baseline}
    for t in table:
        if t["rule"] not in theirs:
            continue
        ids = [i for i in t["per_molecule"] if i in theirs[t["rule"]]]
        d = np.array([np.subtract(t["per_molecule"][i], theirs[t["rule"]][i]) for i in ids])  # [molecules, 2]
        se = d.std(axis=0, ddof=1) / np.sqrt(len(d))
        t.update(cov_r_minus_baseline=float(d[:, 0].mean()), cov_r_minus_baseline_se=float(se[0]),
                 mat_r_minus_baseline=float(d[:, 1].mean()), mat_r_minus_baseline_se=float(se[1]),
                 baseline_molecules=len(ids))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--molecules", type=int, default=300)
    p.add_argument("-m", "--samples", type=int, default=30, help="conformers sampled per molecule")
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--model", default=None, help="score model (default: the shipped one)")
    p.add_argument("--draws", type=int, default=2000, help="random subsets per molecule and rule")
    p.add_argument("-k", "--keep", type=int, default=10)
    p.add_argument("--offset", type=int, default=0, help="skip this many validation molecules first (to split a "
                                                           "run over processes; join with --join)")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0, help="sampling seed (as se3mol conformers --seed)")
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="the score network's precision (as se3mol conformers --precision; runs before the option "
                        "sampled in float32)")
    p.add_argument("--join", type=Path, nargs="+", default=None, metavar="JSON",
                   help="summarise the per-molecule rows of earlier runs together; nothing is sampled")
    p.add_argument("--baseline", type=Path, default=None, metavar="JSON",
                   help="an earlier run on the same molecules (e.g. in another precision): each rule is also "
                        "compared with the same rule there, paired by molecule")
    p.add_argument("--out", type=Path, default=RESULTS / "conformer_selection", help="results file stem")
    args = p.parse_args()
    command = invocation()
    if args.join:
        parts = [read_result(path) for path in args.join]
        rows = [r for part in parts for r in part["molecules"]]
        args.samples, args.keep, args.split = parts[0]["m"], parts[0]["k"], parts[0]["split"]
        args.precision = parts[0].get("precision", "float32")
        args.seed = ", ".join(dict.fromkeys(str(part.get("seed", 0)) for part in parts))
        command = "; ".join(part["command"] for part in parts) + f" (joined with: {command})"
    else:
        import torch
        from rdkit import rdBase

        from se3mol.conformers.sampler import resolve_precision
        from se3mol.runtime import keep_freed_memory

        args.precision = resolve_precision(args.precision, "cpu")
        torch.set_num_threads(1)
        keep_freed_memory()  # as `se3mol conformers` does
        rdBase.DisableLog("rdApp.warning")
        molecules, _ = pick_molecules(args.offset + args.molecules, split=args.split, stereo="smiles")
        rows = sample_and_score(molecules[args.offset:], args.samples, args.model, args.seed, args.precision)
    table = summarise(rows, args.keep, args.threshold, args.draws)
    if args.baseline:
        base = read_result(args.baseline)
        versus_baseline(table, summarise(base["molecules"], base["k"], base["threshold"], base["draws"]))
        base_name = f"`{args.baseline.name}` ({base.get('precision', 'float32')})"
    report = {"split": args.split, "stereo": "smiles", "seed": args.seed,
              "precision": args.precision, "draws": args.draws,
              "baseline": str(args.baseline) if args.baseline else None,
              "n_molecules": len(rows), "n_failed": sum("rmsd" not in r for r in rows), "m": args.samples,
              "k": args.keep, "threshold": args.threshold, "rules": table, "molecules": rows}
    split = {"val": "validation", "test": "test"}[args.split]
    distinct = len({r["id"] for r in rows})
    counted = f"{distinct} QM9 {split} molecules" + (f" ({len(rows)} rows: one per molecule and seed)"
                                                     if distinct < len(rows) else "")
    lines = [f"QM9's SMILES (no stereo), default sampler in {args.precision}, seed(s) {args.seed}, "
             f"{args.samples} samples per molecule; heavy-atom best RMSD to the DFT geometry, COV-R at "
             f"{args.threshold} A. Expected values over {args.draws} random subsets of the samples per molecule. "
             f"Failed molecules: {report['n_failed']}.", "",
             f"| kept conformers | samples | expected COV-R | vs {args.keep} samples (paired, +- s.e.) "
             "| vs by energy as sampled, same samples | MAT-R mean (A) | MAT-R median (A) |"
             + (f" COV-R vs {base_name} (paired) | MAT-R vs it (A) |" if args.baseline else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if args.baseline else "")]

    def pm(t: dict, key: str, scale: float, fmt: str) -> str:
        return f"{scale * t[key]:{fmt}} +- {scale * t[key + '_se']:.{fmt[-2]}f}" if key in t else ""

    for t in table:
        cells = [t["rule"], str(t["samples"]), f"{100 * t['cov_r']:.1f}%", pm(t, "cov_r_minus_samples", 100, "+.1f"),
                 pm(t, "cov_r_minus_energy", 100, "+.1f"), f"{t['mat_r_mean']:.3f}", f"{t['mat_r_median']:.3f}"]
        if args.baseline:
            cells += [pm(t, "cov_r_minus_baseline", 100, "+.1f"), pm(t, "mat_r_minus_baseline", 1, "+.3f")]
        lines.append("| " + " | ".join(cells) + " |")
    # the samples' RMSDs and energies (to try other rules without sampling again) go to per_molecule/
    write_result(args.out, f"Choosing {args.keep} conformers from more samples, {counted}", report, lines,
                 command=command, per_molecule=("molecules", "rules.*.per_molecule"))
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    main()
