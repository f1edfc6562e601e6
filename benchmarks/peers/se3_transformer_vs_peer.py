"""SE(3)-Transformer: se3mol against the peer implementation ``se3-transformer-pytorch``, side by side.

The peer is installed in a separate environment, never as a project dependency:

    python3 -m venv /tmp/peerenv && /tmp/peerenv/bin/pip install torch==2.13.0 se3-transformer-pytorch
    python -m benchmarks.peers.se3_transformer_vs_peer --peer-python /tmp/peerenv/bin/python

Both run on the same real QM9 molecules (the first 18-atom molecules of the test split, fully
connected), at the same degrees (0..3), channels per degree, heads and depth, each in its own
subprocess with an address-space cap (``--mem-cap-gb``) so that the peer cannot exhaust the machine;
peak RSS is that subprocess's ``ru_maxrss`` (over inference and training). Measured: inference
molecules/s (forward, no grad) and training molecules/s (forward + backward + Adam step), wall clock,
both implementations with the same ``torch.set_num_threads`` (``--threads``; 1 by default, because on a
shared 2-core machine two OpenMP threads per process collapse as soon as other jobs run: both
implementations then slow down by an unpredictable factor). The 1-minute load average before and after
each run is recorded, so that contention from other jobs on the machine can be read off the results.
Writes ``benchmarks/peers/results/se3_transformer_vs_peer.json``
and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmarks._isolated import run_isolated
from benchmarks._results import md_table, results_dir, write_result

RESULTS = results_dir(__file__)

# Runs inside a subprocess: args = impl, batch file, depth, degrees, channels, heads, repeats, threads.
WORKER = r'''
import json, resource, sys, time, torch
impl, path, depth, degrees, channels, heads, repeats, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:9])
torch.set_num_threads(threads)
torch.manual_seed(0)
d = torch.load(path, weights_only=True)
z, pos, counts = d["z"], d["pos"], d["counts"]
B, n = len(counts), int(counts[0])
if impl == "peer":
    from se3_transformer_pytorch import SE3Transformer
    model = SE3Transformer(num_tokens=10, dim=channels, heads=heads, dim_head=channels // heads, depth=depth,
                           num_degrees=degrees + 1, output_degrees=1, reduce_dim_out=True)
    tok = z.view(B, n) % 10
    coors = pos.view(B, n, 3)
    mask = torch.ones(B, n, dtype=torch.bool)
    def fwd():
        return model(tok, coors, mask, return_type=0).sum(-1)
else:
    from se3mol.graph import GraphConfig, build_batch
    from se3mol.nn import build_model
    from se3mol.targets import get_target
    model = build_model("se3_transformer", [get_target("gap")],
                        {"hidden": channels, "layers": depth, "max_degree": degrees, "heads": heads})
    batch = build_batch(z, pos, counts, GraphConfig("full"))
    def fwd():
        return model(batch)["gap"]
opt = torch.optim.Adam(model.parameters(), 1e-4)
def timed(fn):
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats
def infer():
    with torch.no_grad():
        fwd()
def train():
    loss = fwd().pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
out = {"infer_molecules_per_s": B / timed(infer)}
out["train_molecules_per_s"] = B / timed(train)
out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
out["parameters"] = sum(p.numel() for p in model.parameters())
print(json.dumps(out))
'''


def make_batch(path: Path, n_mols: int, n_atoms: int) -> None:
    import torch

    from se3mol.data import load_qm9, standard_split

    q = load_qm9(verbose=False)
    test = standard_split()["test"]
    pick = [int(k) for k in test if int(q.counts[k]) == n_atoms][:n_mols]
    zs, ps = [], []
    for k in pick:
        m = q.molecule(k)
        zs.append(torch.from_numpy(m.z))
        ps.append(torch.from_numpy(m.pos).float())
    torch.save({"z": torch.cat(zs), "pos": torch.cat(ps), "counts": torch.tensor([n_atoms] * len(pick))}, path)


def run(python: str, impl: str, batch: Path, depth: int, degrees: int, channels: int, heads: int,
        repeats: int, threads: int, cap_gb: float) -> dict:
    load_before = os.getloadavg()[0]
    r = run_isolated(python, WORKER, [impl, batch, depth, degrees, channels, heads, repeats, threads], cap_gb)
    return {**r, "threads": threads, "load_before": load_before, "load_after": os.getloadavg()[0]}


def add_size_arguments(ap: argparse.ArgumentParser) -> None:
    """The molecules (``make_batch``) and model size of the benchmark; ``se3_transformer_cpu_time`` shares them."""
    ap.add_argument("--molecules", type=int, default=8)
    ap.add_argument("--atoms", type=int, default=18)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--degrees", type=int, default=3, help="highest degree (0..L)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer-python", default="/tmp/peerenv/bin/python")
    add_size_arguments(ap)
    ap.add_argument("--depths", default="1,2")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mem-cap-gb", type=float, default=16.0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each run (both implementations)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        batch = Path(d) / "batch.pt"
        make_batch(batch, a.molecules, a.atoms)
        for depth in [int(x) for x in a.depths.split(",")]:
            for impl, py in (("se3mol", sys.executable), ("peer", a.peer_python)):
                r = run(py, impl, batch, depth, a.degrees, a.channels, a.heads, a.repeats, a.threads, a.mem_cap_gb)
                rows.append({"impl": impl, "depth": depth, "degrees": f"0-{a.degrees}", "channels": a.channels,
                             "heads": a.heads, "molecules": a.molecules, "atoms": a.atoms, **r})
                print(json.dumps(rows[-1]), flush=True)
    nan = float("nan")
    lines = [f"{a.molecules} QM9 molecules of {a.atoms} atoms, fully connected; degrees 0-{a.degrees}, "
             f"{a.channels} channels, {a.heads} heads; {a.threads} torch thread(s) per run; memory cap "
             f"{a.mem_cap_gb} GB per run. Load = 1-minute load average of the machine before/after each run: above "
             "the number of cores other jobs were competing, which slows both implementations.", "",
             *md_table(["impl", "depth", "infer mol/s", "train mol/s", "peak RSS GB", "parameters", "load", "note"],
                       [[r["impl"], r["depth"], f"{r.get('infer_molecules_per_s', nan):.3g}",
                         f"{r.get('train_molecules_per_s', nan):.3g}", f"{r.get('peak_rss_gb', nan):.2f}",
                         r.get("parameters", ""), f"{r['load_before']:.1f}/{r['load_after']:.1f}", r.get("error", "")]
                        for r in rows]), ""]
    ratios = []
    for depth in sorted({r["depth"] for r in rows}):
        ours, peer = ({r["impl"]: r for r in rows if r["depth"] == depth}.get(k, {}) for k in ("se3mol", "peer"))
        ratio = [ours.get(key, nan) / peer.get(key, nan) for key in ("infer_molecules_per_s", "train_molecules_per_s")]
        ratios.append([depth, f"{ratio[0]:.0f}x", f"{ratio[1]:.0f}x",
                       f"{peer.get('peak_rss_gb', nan) / ours.get('peak_rss_gb', nan):.1f}x"])
    lines += md_table(["depth", "se3mol / peer, infer", "se3mol / peer, train", "peer / se3mol, peak RSS"], ratios)
    write_result(RESULTS / "se3_transformer_vs_peer", "SE(3)-Transformer: se3mol against se3-transformer-pytorch",
                 {"rows": rows}, lines)

if __name__ == "__main__":
    main()
