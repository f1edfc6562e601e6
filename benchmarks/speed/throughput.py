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
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._qm9 import bonded_test_molecules
from benchmarks._results import md_table, results_dir, write_result

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

    w = Chem.SDWriter(str(path))
    for name, mol in itertools.islice(bonded_test_molecules(), n):
        mol.SetProp("_Name", name)
        w.write(mol)
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
    from se3mol.prediction import Predictor

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
        t, p = res["train"], res["predict"]
        write_result(RESULTS / "throughput", "Throughput of EGNN training and `se3mol predict`", res, md_table(
            ["measurement", "value"],
            [[f"EGNN training, hidden {t['hidden']}, {t['layers']} layers, batch {t['batch_size']}, {t['graph']} graph",
              f"{t['molecules_per_s']} molecules/s"],
             [f"`se3mol predict` end to end, {p['molecules']} QM9 molecules, SDF in, CSV out (process start and "
              "model load included)", f"{p['cli_molecules_per_s']} molecules/s"],
             ["same, in-process", f"{p['inprocess_molecules_per_s']} molecules/s"],
             ["of which reading + featurising", f"{p['read_featurise_s']} s"],
             ["of which model", f"{p['model_s']} s"]]))

if __name__ == "__main__":
    main()
