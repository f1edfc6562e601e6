"""Training and prediction throughput of se3mol on this machine.

    python -m benchmarks.speed.throughput                 # shipped model's configuration, 2,000-molecule SDF
    python -m benchmarks.speed.throughput --quick         # smoke run

Measures
- training throughput (molecules/s: forward + backward + AdamW step) of EGNN on QM9 batches,
  at the configuration of the shipped model;
- end-to-end ``se3mol predict`` throughput: an SDF of real QM9 molecules in (bonds perceived with
  RDKit when writing it), CSV out, run as a subprocess and timed wall-clock, and, in-process, where
  the time goes (reading and featurising records vs model calls).

Writes ``benchmarks/speed/results/throughput.json`` and ``throughput.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._results import results_dir

RESULTS = results_dir(__file__)


def train_throughput(hidden: int, layers: int, batch_size: int, steps: int, warmup: int = 3) -> float:
    from se3mol.data import load_qm9, standard_split
    from se3mol.graph import GraphConfig
    from se3mol.nn import build_model
    from se3mol.targets import get_target

    q = load_qm9(verbose=False)
    train = standard_split()["train"]
    torch.manual_seed(0)
    model = build_model("egnn", [get_target("gap")], {"hidden": hidden, "layers": layers})
    opt = torch.optim.AdamW(model.parameters(), 5e-4)
    t0, n = 0.0, 0
    for k in range(warmup + steps):
        if k == warmup:
            t0, n = time.perf_counter(), 0
        b = q.batch(train[k * batch_size:(k + 1) * batch_size], GraphConfig(), ["gap"])
        loss = (model(b)["gap"] - b.y[:, 0]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += b.num_graphs
    return n / (time.perf_counter() - t0)


def write_sdf(path: Path, n: int) -> None:
    """``n`` QM9 test molecules with DFT geometries and RDKit-perceived bonds, as SDF."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    from se3mol.data import load_qm9, standard_split

    q = load_qm9(verbose=False)
    idx = standard_split()["test"]
    w = Chem.SDWriter(str(path))
    k = written = 0
    while written < n:
        m = q.molecule(int(idx[k % len(idx)]))
        k += 1
        xyz = f"{m.n_atoms}\n{m.name}\n" + "\n".join(
            f"{Chem.GetPeriodicTable().GetElementSymbol(int(z))} {x:.6f} {y:.6f} {zz:.6f}"
            for z, (x, y, zz) in zip(m.z, m.pos, strict=True))
        mol = Chem.MolFromXYZBlock(xyz)
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=0)
        except ValueError:
            continue
        mol.SetProp("_Name", m.name)
        w.write(mol)
        written += 1
    w.close()


def predict_throughput(sdf: Path, n: int, model: str) -> dict:
    exe = Path(sys.executable).parent / "se3mol"
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.csv"
        t = time.perf_counter()
        subprocess.run([str(exe), "predict", str(sdf), "--model", model, "-o", str(out)], check=True,
                       stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t
        rows = sum(1 for _ in out.open()) - 1
    assert rows == n, f"expected {n} rows, got {rows}"
    # In-process: where the time goes (process start-up and model loading excluded).
    from se3mol.predict import Predictor

    p = Predictor.from_specs([model])
    t = time.perf_counter()
    for _ in p.predict_files([str(sdf)]):
        pass
    total = time.perf_counter() - t
    return {"molecules": n, "cli_wall_s": round(wall, 2), "cli_molecules_per_s": round(n / wall, 1),
            "inprocess_s": round(total, 2), "inprocess_molecules_per_s": round(n / total, 1),
            "read_featurise_s": round(p.stats.read_s, 2), "model_s": round(p.stats.model_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="qm9-egnn-gap")
    a = ap.parse_args()
    from se3mol.pretrained import load_pretrained

    _, ckpt = load_pretrained(a.model)
    cfg = ckpt["model"]["config"]
    bs = ckpt.get("train_config", {}).get("batch_size", 96)
    steps, n_mols = (3, 200) if a.quick else (30, 2000)
    res = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "cores": os.cpu_count(), "torch": torch.__version__},
        "train": {"model": "egnn", "hidden": cfg["hidden"], "layers": cfg["layers"], "batch_size": bs,
                  "graph": ckpt["model"]["graph"]["kind"], "steps_timed": steps,
                  "molecules_per_s": round(train_throughput(cfg["hidden"], cfg["layers"], bs, steps), 1)},
    }
    with tempfile.TemporaryDirectory() as d:
        sdf = Path(d) / "qm9_test.sdf"
        write_sdf(sdf, n_mols)
        res["predict"] = {"model": a.model, **predict_throughput(sdf, n_mols, a.model)}
    print(json.dumps(res, indent=2))
    if not a.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "throughput.json").write_text(json.dumps(res, indent=2) + "\n")
        t, p = res["train"], res["predict"]
        (RESULTS / "throughput.md").write_text(
            "# Throughput (python -m benchmarks.speed.throughput)\n\n"
            f"Machine: {res['machine']['cores']} cores, {res['machine']['threads']} torch threads, "
            f"torch {res['machine']['torch']}.\n\n"
            "| measurement | value |\n| --- | --- |\n"
            f"| EGNN training, hidden {t['hidden']}, {t['layers']} layers, batch {t['batch_size']}, "
            f"{t['graph']} graph | {t['molecules_per_s']} molecules/s |\n"
            f"| `se3mol predict` end to end, {p['molecules']} QM9 molecules, SDF in, CSV out "
            f"(process start and model load included) | {p['cli_molecules_per_s']} molecules/s |\n"
            f"| same, in-process | {p['inprocess_molecules_per_s']} molecules/s |\n"
            f"| of which reading + featurising | {p['read_featurise_s']} s |\n"
            f"| of which model | {p['model_s']} s |\n")


if __name__ == "__main__":
    main()
