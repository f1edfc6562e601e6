"""SE(3)-Transformer alone, timed in CPU seconds of one thread: a measure that other jobs on a shared
machine barely disturb (wall-clock ratios against the peer are in ``se3_transformer_vs_peer.py``).

    python -m benchmarks.speed.se3_transformer_cpu_time                 # benchmark size, depth 2
    python -m benchmarks.speed.se3_transformer_cpu_time --depth 1

Same molecules and sizes as ``se3_transformer_vs_peer.py`` (the first QM9 test-split molecules with
``--atoms`` atoms, fully connected, degrees 0-3, 32 channels, 8 heads). Inference (no grad) and training
(forward + backward + Adam) each run in a fresh process; printed: best and median molecules per CPU
second over ``--repeats`` steps, and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks._isolated import run_isolated
from benchmarks.peers.se3_transformer_vs_peer import add_size_arguments, make_batch

WORKER = r'''
import json, resource, sys, time, torch
path, mode, depth, degrees, channels, heads, repeats = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:8])
torch.set_num_threads(1)
torch.manual_seed(0)
from se3mol.graph import GraphConfig, build_batch
from se3mol.nn import build_model
from se3mol.targets import get_target
d = torch.load(path, weights_only=True)
batch = build_batch(d["z"], d["pos"], d["counts"], GraphConfig("full"))
model = build_model("se3_transformer", [get_target("gap")],
                    {"hidden": channels, "layers": depth, "max_degree": degrees, "heads": heads})
opt = torch.optim.Adam(model.parameters(), 1e-4)
def step():
    if mode == "infer":
        with torch.no_grad():
            model(batch)
    else:
        loss = model(batch)["gap"].pow(2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
step()
times = []
for _ in range(repeats):
    t = time.process_time(); step(); times.append(time.process_time() - t)
times.sort()
n = int(batch.num_graphs)
print(json.dumps({"best": n / times[0], "median": n / times[len(times) // 2],
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--depth", type=int, default=2)
    add_size_arguments(ap)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        batch = Path(d) / "batch.pt"
        make_batch(batch, a.molecules, a.atoms)
        for mode in ("infer", "train"):
            r = run_isolated(sys.executable, WORKER, [batch, mode, a.depth, a.degrees, a.channels, a.heads,
                                                      a.repeats], 16.0)
            if "error" in r:
                print(f"{mode}: {r['error']}")
                continue
            print(f"depth {a.depth} {mode}: {r['best']:.1f} mol/s best, {r['median']:.1f} median "
                  f"(CPU time, 1 thread); peak RSS {r['peak_rss_gb']:.2f} GB")


if __name__ == "__main__":
    main()
