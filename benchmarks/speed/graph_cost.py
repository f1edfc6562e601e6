"""What each graph costs on drug-sized molecules: edges per molecule and EGNN training speed, one thread.

    python -m benchmarks.speed.graph_cost          # a MoleculeACE dev set, as benchmarks.accuracy.moleculeace wrote it
    python -m benchmarks.speed.graph_cost --data FILE.csv --target y

A fully connected graph of a 60-atom molecule has 3,540 directed pairs: on drug-like data the default of QM9
(29 atoms at most) becomes the whole cost of a step. This times three training steps of EGNN (default size) on
the first ``--batch-size`` molecules of a featurised data file for each graph: ``full``, ``radius`` (5 A),
``hops`` with at most 3 bonds between the atoms (bonds, 2- and 3-hop pairs: the conformer score model's graph),
``bond``, and ``radius`` with a narrower model (hidden 64). The default data file is the first development set of
``benchmarks/accuracy/moleculeace.py`` (run it first, or give ``--data``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks._results import ROOT, md_table, results_dir, write_result

RESULTS = results_dir(__file__)
GRAPHS = [("full", {}, {}), ("radius", {"cutoff": 5.0}, {}), ("hops", {"max_hops": 3}, {}), ("bond", {}, {}),
          ("radius", {"cutoff": 5.0}, {"hidden": 64})]


def _step(model, opt, batch) -> None:
    loss = (model.heads.stack(model(batch))[:, 0] - batch.y[:, 0]).abs().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT / "runs" / "bench_moleculeace" / "CHEMBL2047_EC50" / "data.csv")
    ap.add_argument("--target", default="y")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    from se3mol.data.files import LabelledDataset
    from se3mol.graph import GraphConfig
    from se3mol.nn import build_model

    torch.set_num_threads(1)
    ds = LabelledDataset.from_files([a.data], [a.target])
    rows, table = [], []
    idx = torch.arange(min(a.batch_size, len(ds)))
    for kind, graph_kw, cfg in GRAPHS:
        graph = GraphConfig(kind, **graph_kw)
        torch.manual_seed(0)
        model = build_model("egnn", ds.targets, cfg, elements=ds.elements, graph=graph)
        opt = torch.optim.AdamW(model.parameters(), 5e-4)
        batch = ds.batch(idx, graph, [a.target])

        _step(model, opt, batch)
        t = time.perf_counter()
        for _ in range(a.steps):
            _step(model, opt, batch)
        per_step = (time.perf_counter() - t) / a.steps
        row = {"graph": kind, **graph_kw, "model_config": cfg,
               "edges_per_molecule": batch.edge_index.shape[1] / len(idx), "s_per_step": per_step,
               "molecules_per_s": len(idx) / per_step}
        rows.append(row)
        table.append([kind + "".join(f" {k}={v}" for k, v in graph_kw.items()), cfg or "default",
                      f"{row['edges_per_molecule']:.0f}", f"{per_step:.2f}", f"{row['molecules_per_s']:.1f}"])
        print(row, flush=True)
    write_result(RESULTS / "graph_cost", "Graph cost on drug-sized molecules: EGNN training, one thread",
                 {"data": str(a.data), "molecules": len(ds), "atoms_per_molecule": float(ds.counts.float().mean()),
                  "batch_size": len(idx), "rows": rows},
                 [f"{a.data.name}: {len(ds)} molecules, {float(ds.counts.float().mean()):.1f} atoms each on average "
                  f"(hydrogens included); batches of {len(idx)}, {a.steps} timed steps after one warm-up.", "",
                  *md_table(["graph", "EGNN config", "edges per molecule", "s per step", "molecules/s"], table)])


if __name__ == "__main__":
    main()
