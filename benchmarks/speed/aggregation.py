"""Index sums and gathers on the CPU: ``index_add_`` and ``x[index]`` against ``Segments`` (sparse CSR products).

    python -m benchmarks.speed.aggregation                       # micro-benchmark + EGNN training, before/after
    python -m benchmarks.speed.aggregation --baseline 9379604    # "before" = se3mol at that commit

1. Micro: one QM9-sized batch (96 molecules, full graph, ~33k edges, 128 features): sum over the receiver
   index and gather by it, forward and backward, with ``torch.use_deterministic_algorithms`` off and on
   (``se3mol train`` turns it on for reproducible runs, and the deterministic CPU paths of ``index_add_``
   and of indexing's backward are the slow ones).
2. EGNN paper size (7 x 128, full graph, batch 96) training steps (forward + backward + AdamW) in a fresh
   process each, se3mol now against ``--baseline`` (a git worktree of that commit), deterministic off and on.

Writes ``benchmarks/speed/results/aggregation.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

from benchmarks._isolated import run_isolated
from benchmarks._results import ROOT, md_table, results_dir, write_result
from benchmarks.speed.models_throughput import WORKER

RESULTS = results_dir(__file__)


def micro(threads: int) -> dict:
    from se3mol.data import load_qm9, standard_split
    from se3mol.graph import GraphConfig
    from se3mol.nn.layers import Segments

    torch.set_num_threads(threads)
    q = load_qm9(verbose=False)
    b = q.batch(standard_split()["train"][:96], GraphConfig("full"), ["gap"])
    i = b.edge_index[0]
    n, e = b.num_atoms, i.shape[0]
    src = torch.randn(e, 128, requires_grad=True)
    x = torch.randn(n, 128, requires_grad=True)

    def timed(fn, reps: int = 20) -> float:
        fn()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return round((time.perf_counter() - t) / reps * 1e3, 3)

    out = {"atoms": n, "edges": e, "features": 128}
    for det in (False, True):
        torch.use_deterministic_algorithms(det, warn_only=True)
        seg = Segments(i, n)
        key = "deterministic" if det else "default"
        out[key] = {
            "index_add_ sum, fwd+bwd ms": timed(lambda: src.new_zeros(n, 128).index_add_(0, i, src).sum().backward()),
            "Segments.sum, fwd+bwd ms": timed(lambda s=seg: s.sum(src).sum().backward()),
            "x[index] gather, fwd+bwd ms": timed(lambda: x[i].sum().backward()),
            "Segments.gather, fwd+bwd ms": timed(lambda s=seg: s.gather(x).sum().backward()),
            "Segments build ms": timed(lambda: Segments(i, n).matrix(torch.float32)),
        }
    torch.use_deterministic_algorithms(False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="9379604", help="git revision measured as 'before'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    from benchmarks.peers.run import baseline_tree

    res = {"threads": a.threads, "load_before": os.getloadavg()[0], "micro": micro(a.threads), "egnn_paper": {}}
    trees = {"now": ROOT, f"before ({a.baseline})": baseline_tree(a.baseline)}
    for det in ("0", "1"):
        for label, tree in trees.items():
            os.environ["PYTHONPATH"] = str(tree)
            r = run_isolated(sys.executable, WORKER, ["egnn", "full", json.dumps({"hidden": 128, "layers": 7}),
                                                   96, a.steps, a.threads, det], 16)
            res["egnn_paper"][f"{label}, deterministic {'on' if det == '1' else 'off'}"] = r
            print(label, det, r, flush=True)
    res["load_after"] = os.getloadavg()[0]
    m = res["micro"]
    lines = [f"{a.threads} torch threads; load {res['load_before']:.2f} before, {res['load_after']:.2f} after. "
             f"Micro: one batch of 96 QM9 molecules, full graph ({m['edges']} edges, {m['atoms']} atoms, 128 "
             "features).", "",
             *md_table(["operation", "default ms", "deterministic ms"],
                       [[k, m["default"][k], m["deterministic"][k]] for k in m["default"]]),
             "", "EGNN paper size (7 x 128, full graph, batch 96), training molecules/s "
             "(`se3mol train` runs deterministic):", "",
             *md_table(["code", "molecules/s"], [[k, f"{v.get('train_molecules_per_s', float('nan')):.1f}"]
                                                for k, v in res["egnn_paper"].items()])]
    write_result(RESULTS / "aggregation", "Index sums and gathers: index_add_ and x[index] against Segments", res,
                 lines)
    print("\n".join(lines))

if __name__ == "__main__":
    main()
