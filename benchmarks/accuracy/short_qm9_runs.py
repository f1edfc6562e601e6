"""The short QM9 run of every registered model: validation and test MAE after a fixed small budget.

    python -m benchmarks.accuracy.short_qm9_runs [--models egnn,tfn,se3_transformer,clofnet] [--limit 2000] [--epochs 2]

Each model trains with ``se3mol train --model NAME --dataset qm9 --target gap --limit LIMIT --epochs EPOCHS``
(default configs, full graph, seed 0) in its own process; the script collects each run's ``results.json``
into ``benchmarks/accuracy/results/short_qm9_runs.{json,md}``. A smoke test of every family on real data, not a
measure of what the models reach: 2,000 molecules and 2 epochs are far from convergence.
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

from benchmarks._results import results_dir

RESULTS = results_dir(__file__)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="egnn,tfn,se3_transformer,clofnet")
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            out = Path(tmp) / name
            cmd = [sys.executable, "-m", "se3mol", "train", "--model", name, "--dataset", "qm9", "--target", "gap",
                   "--limit", str(args.limit), "--epochs", str(args.epochs), "--seed", "0", "--out", str(out)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                rows.append({"model": name, "error": proc.stderr.strip().splitlines()[-1:], "wall_s": round(wall)})
                print(f"{name}: failed: {proc.stderr[-500:]}", file=sys.stderr)
                continue
            res = json.loads((out / "results.json").read_text())
            rows.append({"model": name, "val_mae_meV": res["val_mae"]["gap"], "test_mae_meV": res["test_mae"]["gap"],
                         "test_n": res["test_n"], "train_s": res["wall_time_s"], "wall_s": round(wall)})
            print(f"{name}: val {res['val_mae']['gap']:.1f} meV, test {res['test_mae']['gap']:.1f} meV, "
                  f"{wall:.0f} s", file=sys.stderr, flush=True)
    command = "python -m benchmarks.accuracy.short_qm9_runs " + " ".join(sys.argv[1:])
    report = {"command": command, "limit": args.limit, "epochs": args.epochs, "target": "gap", "rows": rows,
              "note": "val/test MAE on the first LIMIT molecules of the standard validation/test splits"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "short_qm9_runs.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Short QM9 runs: gap, {args.limit} molecules per split, {args.epochs} epochs", "", f"`{command}`", "",
             "| model | val MAE (meV) | test MAE (meV) | training s | wall s |", "|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | failed: {r['error']} | | | {r['wall_s']} |")
        else:
            lines.append(f"| {r['model']} | {r['val_mae_meV']:.1f} | {r['test_mae_meV']:.1f} | {r['train_s']:.0f} | "
                         f"{r['wall_s']} |")
    (RESULTS / "short_qm9_runs.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
