"""One command for issue 6: se3mol's speed against peers, the FLOP fraction, predict, time to accuracy.

    python -m benchmarks.peers.run --quick     # ~5 minutes: small sizes, few steps, peers at the small size
    python -m benchmarks.peers.run --full      # ~40 minutes: small and paper sizes, every peer that installs
    python -m benchmarks.peers.run --full --baseline 9379604   # also se3mol at an earlier commit ("before")

Measured in one run, on QM9-sized batches (molecules of the training split, the same molecules for
every implementation), each configuration in a fresh memory-capped process (``_isolated.run_isolated``):

1. Training (forward + L1 loss + backward + AdamW step) and inference molecules/s and peak RSS of every
   registered model at a small and at the paper size: EGNN 7 layers x 128 on the full graph; TFN and
   SE(3)-Transformer 7 layers, degrees 0-3, 32 channels (8 heads) on the bond graph, as the
   SE(3)-Transformer paper trains on QM9; ClofNet 7 x 128 on the full graph; control-mlp.
2. The peers, installed in their own environment (``benchmarks/peers/peer_env.sh``, never se3mol's
   dependencies; ``benchmarks/peers/peers.py``) on the same batch files: egnn-pytorch against se3mol's EGNN,
   se3-transformer-pytorch against se3mol's SE(3)-Transformer (8 molecules, full graph, depth 1 and 2 at
   the paper width: its paper depth does not fit in 24 GB), PaiNN (schnetpack) and the equivariant
   transformer (torchmd-net) as reference points. Ratios se3mol / peer.
3. FLOP fraction: this CPU's float32 matmul throughput (best square ``torch.mm`` of 1024-3072, same
   threads) against (a) the FLOP/s inside EGNN's dense layers (their FLOPs, counted from every
   ``nn.Linear`` call forward and backward, over the profiler's wall time of those matrix products,
   sparse aggregation products excluded) and (b) the same FLOPs over the whole training step. Also
   bfloat16 autocast throughput, for the record.
4. ``se3mol predict`` end to end (SDF in, CSV out, subprocess) against pure inference of the same
   molecules (``benchmarks/predict/predict_scale.py``), with its time split.
5. Time to accuracy: read from ``benchmarks/accuracy/results/time_to_accuracy.json`` (60-minute runs made by
   ``benchmarks/accuracy/time_to_accuracy.py``; too long for this command).

``--threads`` (default 2: this machine's cores) sets torch threads everywhere. Run alone on the machine;
the load average before and after every row is recorded. Writes ``benchmarks/peers/results/run_{quick,full}.
{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._isolated import run_isolated
from benchmarks._results import ROOT, machine, results_dir, write_result
from benchmarks.accuracy.time_to_accuracy import load_configurations
from benchmarks.peers import peers
from benchmarks.speed.models_throughput import WORKER as MODEL_WORKER

RESULTS = results_dir(__file__)

# (family, size, graph, config, peer): se3mol's configurations; peer = peers.py name measured beside it.
MODELS = [
    ("egnn", "small", "full", {"hidden": 64, "layers": 4}, "egnn"),
    ("egnn", "paper", "full", {"hidden": 128, "layers": 7}, "egnn"),
    ("clofnet", "small", "full", {"hidden": 64, "layers": 4}, None),
    ("clofnet", "paper", "full", {"hidden": 128, "layers": 7}, None),
    ("tfn", "small", "bond", {"hidden": 16, "layers": 4, "max_degree": 2}, None),
    ("tfn", "paper", "bond", {"hidden": 32, "layers": 7, "max_degree": 3}, None),
    ("se3_transformer", "small", "bond", {"hidden": 16, "layers": 4, "max_degree": 2, "heads": 4}, None),
    ("se3_transformer", "paper", "bond", {"hidden": 32, "layers": 7, "max_degree": 3, "heads": 8}, None),
    ("control-mlp", "small", "full", {}, None),
]
# The SE(3)-Transformer widths of peers.SIZES, in se3mol's terms (depth set per comparison).
SE3T_WIDTHS = {"paper": {"hidden": 32, "max_degree": 3, "heads": 8},
               "small": {"hidden": 16, "max_degree": 2, "heads": 4}}
REFERENCES = ["painn", "et"]  # peers without a se3mol twin: reference points on the same batches

FLOP_WORKER = r"""
import json, sys, time, torch
from se3mol.data import load_qm9, standard_split
from se3mol.graph import GraphConfig
from se3mol.nn import build_model, layers as L
from se3mol.targets import get_target
cfg, bs, steps, threads = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)

def peak(dtype, sizes=(1024, 2048, 3072), seconds=2.0):
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        reps, t = 0, time.perf_counter()
        while reps == 0 or time.perf_counter() - t < seconds:  # (bfloat16 is slow on CPUs without avx512_bf16)
            a @ b
            reps += 1
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t))
    return best

q = load_qm9(verbose=False)
train = standard_split()["train"]
batches = [q.batch(train[k * bs:(k + 1) * bs], GraphConfig("full"), ["gap"]) for k in range(steps + 1)]
torch.manual_seed(0)
model = build_model("egnn", [get_target("gap")], cfg)
opt = torch.optim.AdamW(model.parameters(), 5e-4)
flops = [0]
def count(mod, inp, out):
    rows = inp[0].numel() // mod.in_features
    per = 2 * rows * mod.in_features * mod.out_features
    flops[0] += per * (2 + int(inp[0].requires_grad))   # forward, weight gradient, input gradient
for m in model.modules():
    if isinstance(m, torch.nn.Linear):
        m.register_forward_hook(count)
def step(b, autocast=False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = (model(b)["gap"].float() - b.y[:, 0]).abs().mean()
    opt.zero_grad(); loss.backward(); opt.step()
step(batches[0])
flops[0] = 0
t = time.perf_counter()
for b in batches[1:]:
    step(b)
wall = time.perf_counter() - t
dense_flops = flops[0]
# Wall time inside the dense products: profile the same steps, the sparse aggregation products marked.
plain = L._csr_sum
def marked(seg, src):
    with torch.profiler.record_function("se3mol::sparse"):
        return plain(seg, src)
L._csr_sum = marked
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for b in batches[1:]:
        step(b)
L._csr_sum = plain
def sparse_parent(e):
    p = e.cpu_parent
    while p is not None:
        if p.name == "se3mol::sparse":
            return True
        p = p.cpu_parent
    return False
dense_us = sum(e.self_cpu_time_total for e in prof.events()
               if e.name in ("aten::mm", "aten::addmm", "aten::bmm") and not sparse_parent(e))
flops[0] = 0
t = time.perf_counter()
for b in batches[1:]:
    step(b, autocast=True)
wall_bf16 = time.perf_counter() - t
fp32, bf16 = peak(torch.float32), peak(torch.bfloat16, sizes=(1024,))
print(json.dumps({
    "matmul_peak_fp32_gflops": fp32 / 1e9, "matmul_peak_bf16_gflops": bf16 / 1e9,
    "dense_gflop_per_step": dense_flops / steps / 1e9, "step_s": wall / steps,
    "dense_s_per_step": dense_us / 1e6 / steps,
    "dense_gflops_inside": dense_flops / (dense_us / 1e6) / 1e9,
    "dense_gflops_whole_step": dense_flops / wall / 1e9,
    "fraction_inside_dense": dense_flops / (dense_us / 1e6) / fp32,
    "fraction_whole_step": dense_flops / wall / fp32,
    "train_molecules_per_s": steps * bs / wall, "train_molecules_per_s_bf16_autocast": steps * bs / wall_bf16,
}))
"""


def load() -> float:
    return round(os.getloadavg()[0], 2)


def se3mol_row(python: str, pythonpath: str, family: str, graph: str, cfg: dict, bs: int, steps: int,
               threads: int, cap: float) -> dict:
    env_before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = pythonpath
    try:
        before = load()
        r = run_isolated(python, MODEL_WORKER, [family, graph, json.dumps(cfg), bs, steps, threads], cap)
    finally:
        if env_before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = env_before
    return {**r, "load_before": before, "load_after": load()}


def baseline_tree(rev: str) -> Path:
    """A checkout of ``rev`` (a git worktree under the temp directory) to measure se3mol "before"."""
    path = Path(tempfile.gettempdir()) / f"se3mol-baseline-{rev}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev], check=True,
                       capture_output=True)
    return path


def write_batches(directory: Path, bs: int, steps: int, pick: str = "first") -> list[Path]:
    from se3mol.data import load_qm9, standard_split

    q = load_qm9(verbose=False)
    train = standard_split()["train"]
    if pick == "first":
        groups = [train[k * bs:(k + 1) * bs] for k in range(steps + 1)]
    else:  # molecules of 18 atoms (the SE(3)-Transformer peer pads to the largest one)
        eighteen = train[q.counts[train] == 18]
        groups = [eighteen[k * bs:(k + 1) * bs] for k in range(steps + 1)]
    return peers.write_qm9_batch_files(directory, q, groups)


SE3T_PEER_WORKER = r"""
import json, resource, sys, time, torch
from se3mol.graph import GraphConfig, build_batch
from se3mol.nn import build_model
from se3mol.targets import get_target
cfg, steps, threads, files = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
torch.set_num_threads(threads)
torch.manual_seed(0)
model = build_model("se3_transformer", [get_target("gap")], cfg, graph=GraphConfig("full"))
opt = torch.optim.AdamW(model.parameters(), 5e-4)
batches = []
for f in files:
    d = torch.load(f, weights_only=True)
    b = build_batch(d["z"], d["pos"], d["counts"], GraphConfig("full"))
    batches.append((b, d["y"]))
timed = [batches[1 + k % max(len(batches) - 1, 1)] if len(batches) > 1 else batches[0] for k in range(steps)]
model.eval()
with torch.no_grad():
    model(batches[0][0])
    t = time.perf_counter()
    for b, _ in timed:
        model(b)
    infer = sum(int(b.num_graphs) for b, _ in timed) / (time.perf_counter() - t)
model.train()
def step(b, y):
    loss = (model(b)["gap"] - y).abs().mean()
    opt.zero_grad(); loss.backward(); opt.step()
step(*batches[0])
t = time.perf_counter()
for b, y in timed:
    step(b, y)
train = sum(int(b.num_graphs) for b, _ in timed) / (time.perf_counter() - t)
print(json.dumps({"infer_molecules_per_s": infer, "train_molecules_per_s": train,
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""


def ratio(a: dict, b: dict, key: str) -> float | None:
    if key in a and key in b and b[key]:
        return round(a[key] / b[key], 2)
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-python", default=os.environ.get("PEER_PYTHON", "/tmp/peerenv/bin/python"))
    ap.add_argument("--mem-cap-gb", type=float, default=20.0)
    ap.add_argument("--baseline", help="git revision of se3mol to measure as 'before' (models only)")
    ap.add_argument("--batch-size", type=int, default=96)
    ap.add_argument("--se3t-depths", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2],
                    help="depths of the SE(3)-Transformer peer comparison with --full (default 1,2; depth 2 costs "
                         "the peer ~13 GB and ~10 minutes)")
    a = ap.parse_args()
    name = "quick" if a.quick else "full"
    steps = 2 if a.quick else 5
    sizes = ("small",) if a.quick else ("small", "paper")
    here = str(ROOT)
    res: dict = {"mode": name, "threads": a.threads, "batch_size": a.batch_size, "steps": steps,
                 "machine": {**machine(), "capability": torch.backends.cpu.get_cpu_capability()},
                 "git": subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                                       text=True).stdout.strip()}
    avail = peers.available_peers(a.peer_python) if Path(a.peer_python).exists() else {"error": "no peer env"}
    res["peers_available"] = avail
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "qm9").mkdir()
        files = write_batches(Path(d) / "qm9", a.batch_size, steps)
        # 1 + 2: se3mol's models, each beside its peer.
        rows = []
        for family, size, graph, cfg, peer in MODELS:
            if size not in sizes:
                continue
            row = {"model": family, "size": size, "graph": graph, "config": cfg,
                   "se3mol": se3mol_row(sys.executable, here, family, graph, cfg, a.batch_size, steps, a.threads,
                                        a.mem_cap_gb)}
            if a.baseline:
                tree = baseline_tree(a.baseline)
                row["before"] = se3mol_row(sys.executable, str(tree), family, graph, cfg, a.batch_size, steps,
                                           a.threads, a.mem_cap_gb)
            if peer and peer in avail and "error" not in avail[peer]:
                row["peer"] = peers.run_peer(a.peer_python, peer, size, files, steps, a.threads, a.mem_cap_gb)
                row["peer_package"] = avail[peer]["package"]
            print(json.dumps(row), flush=True)
            rows.append(row)
        res["models"] = rows
        refs = []
        for peer in REFERENCES:
            if peer in avail and "error" not in avail[peer]:
                for size in sizes:
                    refs.append({"peer": peer, "package": avail[peer]["package"], "size": size,
                                 **peers.run_peer(a.peer_python, peer, size, files, steps, a.threads, a.mem_cap_gb)})
                    print(json.dumps(refs[-1]), flush=True)
        res["references"] = refs
        # SE(3)-Transformer against its peer: 8 molecules of 18 atoms, full graph, paper width, shallow depths.
        se3t = []
        if "se3_transformer" in avail and "error" not in avail["se3_transformer"]:
            (Path(d) / "se3t").mkdir()
            small_files = write_batches(Path(d) / "se3t", 8, 1 if a.quick else 2, pick="eighteen")
            # --quick: the small width at depth 1 (the paper width costs the peer ~90 s and 7 GB per step).
            width = "small" if a.quick else "paper"
            for depth in ((1,) if a.quick else a.se3t_depths):
                before = load()
                cfg = {**SE3T_WIDTHS[width], "layers": depth}
                ours = run_isolated(sys.executable, SE3T_PEER_WORKER,
                                    [json.dumps(cfg), 1 if a.quick else 2, a.threads, *map(str, small_files)],
                                    a.mem_cap_gb)
                theirs = peers.run_peer(a.peer_python, "se3_transformer", width, small_files,
                                        1 if a.quick else 2, a.threads, a.mem_cap_gb, depth=depth)
                se3t.append({"depth": depth, "width": width, "config": cfg, "se3mol": ours, "peer": theirs,
                             "load_before": before, "load_after": load()})
                print(json.dumps(se3t[-1]), flush=True)
        res["se3_transformer_vs_peer"] = se3t
    # 3: FLOP fraction of EGNN (paper size).
    before = load()
    res["flops"] = {**run_isolated(sys.executable, FLOP_WORKER,
                                   [json.dumps({"hidden": 128, "layers": 7}), a.batch_size, steps, a.threads],
                                   a.mem_cap_gb), "load_before": before, "load_after": load()}
    print(json.dumps(res["flops"]), flush=True)
    # 4: predict end to end against pure inference.
    res["predict"] = predict_vs_inference(2000 if a.quick else 20000, a.threads)
    print(json.dumps(res["predict"]), flush=True)
    # 5: time to accuracy, from its own (60-minute) benchmark.
    res["time_to_accuracy"] = load_configurations()
    res["wall_s"] = round(time.perf_counter() - t_start, 1)
    res["goals"] = goals(res)
    write_result(RESULTS / f"run_{name}", f"Benchmarks against peers (--{res['mode']})", res, markdown(res))
    print("\n".join(markdown(res)))


def predict_vs_inference(n: int, threads: int) -> dict:
    from benchmarks.predict import predict_scale as ps

    pool = ps.molblock_pool(min(n, 2000))
    with tempfile.TemporaryDirectory() as d:
        sdf = Path(d) / "in.sdf"
        ps.write_sdf(sdf, n, pool)
        before = load()
        pure = ps.pure_inference(pool, 256, threads, min_molecules=min(n, 4000))
        run = ps.run_predict(sdf, n, threads, 256, 4)
    return {"molecules": n, "threads": threads, **run, "pure_inference": pure,
            "end_to_end_over_pure_inference": round(pure["molecules_per_s"] / run["molecules_per_s_end_to_end"], 2),
            "steady_over_pure_inference": round(pure["molecules_per_s"] / run["molecules_per_s_steady"], 2),
            "load_before": before, "load_after": load()}


def goals(res: dict) -> list[dict]:
    out = []
    egnn = next((r for r in res["models"] if r["model"] == "egnn" and r["size"] == "paper"), None)
    if egnn and "peer" in egnn:
        x = ratio(egnn["se3mol"], egnn["peer"], "train_molecules_per_s")
        out.append({"goal": "EGNN training >= 6x egnn-pytorch (paper size)", "measured": f"{x}x",
                    "met": x is not None and x >= 6})
    f = res.get("flops", {})
    if "fraction_inside_dense" in f:
        out.append({"goal": "EGNN dense layers >= 40% of float32 matmul throughput",
                    "measured": f"{100 * f['fraction_inside_dense']:.0f}% inside the dense layers; "
                                f"{100 * f['fraction_whole_step']:.0f}% over the whole step",
                    "met": f["fraction_inside_dense"] >= 0.4})
    for r in res.get("se3_transformer_vs_peer", []):
        if "error" in r["se3mol"] or "error" in r["peer"] or r["width"] != "paper":
            continue
        x = ratio(r["se3mol"], r["peer"], "train_molecules_per_s")
        m = ratio(r["peer"], r["se3mol"], "peak_rss_gb")
        out.append({"goal": f"SE(3)-Transformer >= 100x se3-transformer-pytorch with <= 1/10 of its memory "
                            f"(depth {r['depth']})", "measured": f"train {x}x, memory 1/{m}",
                    "met": bool(x and m and x >= 100 and m >= 10)})
    se3t = next((r for r in res["models"] if r["model"] == "se3_transformer" and r["size"] == "paper"), None)
    if egnn and se3t and "train_molecules_per_s" in se3t["se3mol"]:
        x = ratio(egnn["se3mol"], se3t["se3mol"], "train_molecules_per_s")
        out.append({"goal": "SE(3)-Transformer (bond graph) within 10x of EGNN's training throughput, paper sizes",
                    "measured": f"EGNN / SE(3)-Transformer = {x}", "met": x is not None and x <= 10})
    p = res.get("predict", {})
    if "end_to_end_over_pure_inference" in p:
        out.append({"goal": "predict end to end within 1.5x of pure inference",
                    "measured": f"{p['end_to_end_over_pure_inference']}x", "met": p["end_to_end_over_pure_inference"]
                    <= 1.5})
    for cname, r in res.get("time_to_accuracy", {}).items():
        best = min(q["val_mae_gap_meV"] for q in r["curve"])
        out.append({"goal": f"val gap MAE <= 120 meV after {r['budget_min']:g} min ({cname})",
                    "measured": f"{best:.1f} meV", "met": best <= 120})
    return out


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(res: dict) -> list[str]:
    m = res["machine"]
    lines = [f"se3mol {res['git']}; {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['capability']}); "
             f"{res['threads']} torch threads everywhere; batches of {res['batch_size']} QM9 training molecules "
             f"(the same for every implementation); {res['steps']} timed steps; total {res['wall_s']:.0f} s.", "",
             "## Goals", "", "| goal | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else 'no'} |" for g in res["goals"]]
    lines += ["", "## Models (molecules/s; peak RSS GB)", "",
              "| model | size | graph | se3mol train | se3mol infer | RSS | before train | before infer | peer "
              "| peer train | peer infer | peer RSS | train ratio | infer ratio | load |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in res["models"]:
        s, b, p = r["se3mol"], r.get("before", {}), r.get("peer", {})
        lines.append(
            f"| {r['model']} | {r['size']} | {r['graph']} | {_fmt(s.get('train_molecules_per_s'))} | "
            f"{_fmt(s.get('infer_molecules_per_s'))} | {_fmt(s.get('peak_rss_gb'), 2)} | "
            f"{_fmt(b.get('train_molecules_per_s'))} | {_fmt(b.get('infer_molecules_per_s'))} | "
            f"{r.get('peer_package', '-')} | {_fmt(p.get('train_molecules_per_s'))} | "
            f"{_fmt(p.get('infer_molecules_per_s'))} | {_fmt(p.get('peak_rss_gb'), 2)} | "
            f"{_fmt(ratio(s, p, 'train_molecules_per_s'), 2)} | {_fmt(ratio(s, p, 'infer_molecules_per_s'), 2)} | "
            f"{s.get('load_before')}/{s.get('load_after')} |" + (f" {s['error']}" if "error" in s else ""))
    if res["references"]:
        lines += ["", "Reference points on the same batches:", "",
                  "| peer | package | size | train mol/s | infer mol/s | peak RSS GB | parameters | note |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['peer']} | {r['package']} | {r['size']} | {_fmt(r.get('train_molecules_per_s'))} | "
                  f"{_fmt(r.get('infer_molecules_per_s'))} | {_fmt(r.get('peak_rss_gb'), 2)} | "
                  f"{r.get('parameters', '')} | {r.get('error', '')} |" for r in res["references"]]
    if res["se3_transformer_vs_peer"]:
        w = res["se3_transformer_vs_peer"][0]["config"]
        lines += ["", "SE(3)-Transformer against se3-transformer-pytorch (8 molecules of 18 atoms, full graph, "
                  f"degrees 0-{w['max_degree']}, {w['hidden']} channels, {w['heads']} heads):", "",
                  "| depth | se3mol train / infer mol/s | peer train / infer mol/s | RSS se3mol / peer GB "
                  "| ratios train / infer / memory |", "| --- | --- | --- | --- | --- |"]
        for r in res["se3_transformer_vs_peer"]:
            s, p = r["se3mol"], r["peer"]
            lines.append(f"| {r['depth']} | {_fmt(s.get('train_molecules_per_s'), 2)} / "
                         f"{_fmt(s.get('infer_molecules_per_s'), 2)} | {_fmt(p.get('train_molecules_per_s'), 3)} / "
                         f"{_fmt(p.get('infer_molecules_per_s'), 3)} | {_fmt(s.get('peak_rss_gb'), 2)} / "
                         f"{_fmt(p.get('peak_rss_gb'), 2)} | {_fmt(ratio(s, p, 'train_molecules_per_s'), 0)}x / "
                         f"{_fmt(ratio(s, p, 'infer_molecules_per_s'), 0)}x / "
                         f"1/{_fmt(ratio(p, s, 'peak_rss_gb'), 1)} |" + (f" {p.get('error', '')}"))
    f = res["flops"]
    if "error" not in f:
        lines += ["", "## FLOP fraction (EGNN paper size, training step)", "",
                  f"float32 matmul peak of this CPU: {f['matmul_peak_fp32_gflops']:.0f} GFLOP/s "
                  f"(bfloat16: {f['matmul_peak_bf16_gflops']:.0f}). Dense layers: "
                  f"{f['dense_gflop_per_step']:.1f} GFLOP per step, {f['dense_s_per_step']:.3f} s of a "
                  f"{f['step_s']:.3f} s step: {f['dense_gflops_inside']:.0f} GFLOP/s inside them "
                  f"({100 * f['fraction_inside_dense']:.0f}% of peak), {f['dense_gflops_whole_step']:.0f} GFLOP/s "
                  f"over the whole step ({100 * f['fraction_whole_step']:.0f}%). bfloat16 autocast: "
                  f"{f['train_molecules_per_s_bf16_autocast']:.1f} molecules/s against "
                  f"{f['train_molecules_per_s']:.1f} in float32."]
    p = res["predict"]
    if "end_to_end_over_pure_inference" in p:
        lines += ["", "## predict", "",
                  f"{p['molecules']} QM9 molecules, SDF in, CSV out, shipped default model: "
                  f"{p['molecules_per_s_end_to_end']:.1f} molecules/s end to end, pure inference "
                  f"{p['pure_inference']['molecules_per_s']:.1f}: {p['end_to_end_over_pure_inference']}x "
                  f"(steady state {p['steady_over_pure_inference']}x). Time split: "
                  + ", ".join(f"{k} {v}" for k, v in p.get("time_split_s", {}).items()) + "."]
    if res["time_to_accuracy"]:
        lines += ["", "## Time to accuracy (benchmarks/accuracy/results/time_to_accuracy.md)", "",
                  "| configuration | minutes: val gap MAE meV |", "| --- | --- |"]
        for cname, r in res["time_to_accuracy"].items():
            lines.append(f"| {cname} | " + ", ".join(f"{q['time_s'] / 60:.0f}: {q['val_mae_gap_meV']:.0f}"
                                                     for q in r["curve"]) + " |")
    return lines


if __name__ == "__main__":
    main()
