"""How much a score model's forward pass costs on every atom pair against bonds plus 2- and 3-hop pairs.

    python -m benchmarks.speed.score_graph_speed [-n 16] [--repeats 10] [--threads 1]

For the first N QM9 test molecules (with hydrogens, 10 conformers each as the sampler batches them), the
fraction of atom pairs within 3 bonds, and the forward time of a score model of the shipped model's size on
both graphs (``ScoreModelConfig.max_hops`` None and 3), timed interleaved molecule by molecule in one process
so that a change of machine speed hits both alike. Both models have untrained weights: the cost of a forward
pass does not depend on them. Writes ``benchmarks/speed/results/score_graph_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks._results import md_table, results_dir, write_result
from benchmarks.conformers.conformers import pick_molecules

RESULTS = results_dir(__file__)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--molecules", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10, help="forward passes per molecule and graph")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "score_graph_speed", help="results stem (.json, .md appended)")
    args = p.parse_args()
    import torch
    from rdkit import Chem

    from se3mol.conformers.sampler import ScoreSampler
    from se3mol.conformers.score import ScoreModel
    from se3mol.graph import collate

    torch.set_num_threads(args.threads)
    molecules, _ = pick_molecules(args.molecules, split="test", stereo="smiles")
    shipped = ScoreSampler.load("conformers-clofnet-qm9").model
    full = ScoreModel(replace(shipped.config, max_hops=None), shipped.elements).eval()
    near = ScoreModel(replace(shipped.config, max_hops=3), shipped.elements).eval()
    t_full = t_near = 0.0
    e_full = e_near = 0
    with torch.no_grad():
        for _, smiles, _ in molecules:
            template = ScoreSampler(full).molecule(Chem.AddHs(Chem.MolFromSmiles(smiles)))
            b_full, b_near = collate([template] * 10, full.graph), collate([template] * 10, near.graph)
            e_full += b_full.edge_index.shape[1]
            e_near += b_near.edge_index.shape[1]
            sigma = torch.full((10,), 0.5)
            for _ in range(2):  # warm-up
                full.score(b_full, sigma), near.score(b_near, sigma)
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                full.score(b_full, sigma)
            t_full += time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                near.score(b_near, sigma)
            t_near += time.perf_counter() - t0
    n = len(molecules) * args.repeats
    report = {"threads": args.threads,
              "n_molecules": len(molecules), "conformers_per_batch": 10, "model_config": asdict(full.config),
              "pair_fraction_3_hops": e_near / e_full, "ms_per_forward_all_pairs": 1e3 * t_full / n,
              "ms_per_forward_3_hops": 1e3 * t_near / n, "speedup": t_full / t_near}
    size = ", ".join(f"{k} {v}" for k, v in asdict(near.config).items() if k != "max_hops")
    write_result(args.out, "Score model forward pass: every atom pair against bonds + 2- and 3-hop pairs", report, [
        f"{len(molecules)} QM9 test molecules with hydrogens, 10 conformers per batch, {args.threads} torch "
        f"thread(s), the shipped model's size ({size}); interleaved in one process.", "",
        *md_table(["graph", "edges (fraction of all pairs)", "ms per forward pass"], [
            ["every pair (the score model before 3-hop)", "100%", f"{report['ms_per_forward_all_pairs']:.1f}"],
            ["max_hops=3", f"{100 * report['pair_fraction_3_hops']:.1f}%", f"{report['ms_per_forward_3_hops']:.1f}"]]),
        "", f"Speed-up: {report['speedup']:.2f}x."])
    print(json.dumps({k: report[k] for k in ("pair_fraction_3_hops", "speedup")}))


if __name__ == "__main__":
    main()
