"""Training and inference throughput and peak memory of every registered family, small and paper-size.

    python -m benchmarks.speed.models_throughput     # writes benchmarks/speed/results/models_throughput.{json,md}

On real QM9 batches (96 molecules from the training split), one fresh process per configuration
(peak RSS = that process's ru_maxrss, capped by --mem-cap-gb). Paper sizes: EGNN 7 layers x 128 on
the full graph (Satorras et al.); TFN and SE(3)-Transformer 7 layers, degrees 0-3, 32 channels
(SE(3)-Transformer 8 heads) on the bond graph, as the SE(3)-Transformer paper trains on QM9.

``--threads N`` sets ``torch.set_num_threads`` in each run (default: torch's own, one per core); each row
records it and the machine's 1-minute load average before/after, since other jobs on a shared machine
slow every run down. ``--only family[,family]`` re-measures those families and replaces their rows in the
existing results, keeping the others.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from benchmarks._isolated import run_isolated
from benchmarks._results import md_table, results_dir, write_result

RESULTS = results_dir(__file__)

CONFIGS = [
    ("egnn", "small", "full", {"hidden": 64, "layers": 4}),
    ("egnn", "paper", "full", {"hidden": 128, "layers": 7}),
    ("tfn", "small", "bond", {"hidden": 16, "layers": 4, "max_degree": 2}),
    ("tfn", "paper", "bond", {"hidden": 32, "layers": 7, "max_degree": 3}),
    ("se3_transformer", "small", "bond", {"hidden": 16, "layers": 4, "max_degree": 2, "heads": 4}),
    ("se3_transformer", "paper", "bond", {"hidden": 32, "layers": 7, "max_degree": 3, "heads": 8}),
]

WORKER = r"""
import json, resource, sys, time, torch
from se3mol.data import attach_bonds, load_qm9, standard_split
from se3mol.graph import GraphConfig
from se3mol.nn import build_model
from se3mol.targets import get_target
name, graph, cfg, bs, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if int(sys.argv[6]) > 0:
    torch.set_num_threads(int(sys.argv[6]))
if len(sys.argv) > 7:  # optional: deterministic algorithms on (1) or off (0), as se3mol train sets them
    torch.use_deterministic_algorithms(sys.argv[7] == "1", warn_only=True)
q = load_qm9(verbose=False)
if graph == "bond":
    attach_bonds(q)
train = standard_split()["train"]
torch.manual_seed(0)
model = build_model(name, [get_target("gap")], cfg, graph=GraphConfig(graph))
opt = torch.optim.AdamW(model.parameters(), 5e-4)
batches = [q.batch(train[k * bs:(k + 1) * bs], GraphConfig(graph), ["gap"]) for k in range(steps + 1)]
def step(b):
    loss = (model(b)["gap"] - b.y[:, 0]).abs().mean()
    opt.zero_grad(); loss.backward(); opt.step()
step(batches[0])
t = time.perf_counter()
for b in batches[1:]:
    step(b)
train_rate = steps * bs / (time.perf_counter() - t)
model.eval()
with torch.no_grad():
    model(batches[0])
    t = time.perf_counter()
    for b in batches[1:]:
        model(b)
    infer_rate = steps * bs / (time.perf_counter() - t)
print(json.dumps({"train_molecules_per_s": train_rate, "infer_molecules_per_s": infer_rate,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
                  "parameters": sum(p.numel() for p in model.parameters()),
                  "edges_per_batch": int(batches[1].edge_index.shape[1])}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=96)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--mem-cap-gb", type=float, default=20.0)
    ap.add_argument("--only", default="", help="comma-separated family names; other rows are kept from the last run")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    a = ap.parse_args()
    only = [x for x in a.only.split(",") if x]
    previous = RESULTS / "models_throughput.json"
    if only and previous.exists():
        old = json.loads(previous.read_text())
        kept = {(r["model"], r["size"]): r for r in (old["rows"] if isinstance(old, dict) else old)}
    else:
        kept = {}
    rows = []
    for name, size, graph, cfg in CONFIGS:
        if only and name not in only:
            if (name, size) in kept:
                rows.append(kept[(name, size)])
            continue
        load_before = os.getloadavg()[0]
        r = run_isolated(sys.executable, WORKER, [name, graph, json.dumps(cfg), a.batch_size, a.steps, a.threads],
                         a.mem_cap_gb)
        rows.append({"model": name, "size": size, "graph": graph, "config": cfg, "batch_size": a.batch_size, **r,
                     "threads": a.threads or "default", "load_before": load_before, "load_after": os.getloadavg()[0]})
        print(json.dumps(rows[-1]), flush=True)
    nan = float("nan")
    table = []
    for r in rows:
        train, infer = r.get("train_molecules_per_s", nan), r.get("infer_molecules_per_s", nan)
        load = f"{r['load_before']:.1f}/{r['load_after']:.1f}" if "load_before" in r else "not recorded"
        table.append([r["model"], r["size"], r["graph"], f"`{json.dumps(r['config'])}`", f"{train:.1f}", f"{infer:.1f}",
                      f"{r.get('peak_rss_gb', nan):.2f}", r.get("parameters", ""), r.get("threads", "default"), load,
                      r.get("error", "")])
    write_result(RESULTS / "models_throughput", "Model throughput: every family, small and paper size",
                 {"batch_size": a.batch_size, "steps": a.steps, "mem_cap_gb": a.mem_cap_gb, "rows": rows}, [
        f"QM9 training batches of {a.batch_size} molecules; one process per row; memory cap {a.mem_cap_gb} GB. "
        "Threads: torch threads of the run (default = one per core). Load: the machine's 1-minute load average "
        "before/after the run (above the number of cores, other jobs were competing and slowed the run).", "",
        *md_table(["model", "size", "graph", "config", "train mol/s", "infer mol/s", "peak RSS GB", "parameters",
                   "threads", "load", "note"], table)])

if __name__ == "__main__":
    main()
