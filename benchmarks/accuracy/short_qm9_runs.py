"""The short QM9 run of every registered model: validation and test MAE after a fixed small budget.

    python -m benchmarks.accuracy.short_qm9_runs [--models egnn,tfn,se3_transformer,clofnet] [--limit 2000] [--epochs 2]

Each model trains with ``se3mol train --model NAME --dataset qm9 --target gap --limit LIMIT --epochs EPOCHS``
(default configs, full graph, seed 0) in its own process; the script collects each run's ``results.json``
into ``benchmarks/accuracy/results/short_qm9_runs.{json,md}``. A smoke test of every family on real data, not a
measure of what the models reach: 2,000 molecules and 2 epochs are far from convergence.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from benchmarks._results import md_table, results_dir, write_result
from benchmarks._train import train_run

RESULTS = results_dir(__file__)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="egnn,tfn,se3_transformer,clofnet")
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            res, wall, error = train_run(["--model", name, "--dataset", "qm9", "--target", "gap", "--limit",
                                          str(args.limit), "--epochs", str(args.epochs), "--seed", "0"],
                                         Path(tmp) / name, args.threads)
            if res is None:
                rows.append({"model": name, "error": error, "wall_s": round(wall)})
                continue
            rows.append({"model": name, "val_mae_meV": res["val_mae"]["gap"], "test_mae_meV": res["test_mae"]["gap"],
                         "test_n": res["test_n"], "train_s": res["wall_time_s"], "wall_s": round(wall)})
            print(f"{name}: val {res['val_mae']['gap']:.1f} meV, test {res['test_mae']['gap']:.1f} meV, "
                  f"{wall:.0f} s", file=sys.stderr, flush=True)
    report = {"limit": args.limit, "epochs": args.epochs, "target": "gap", "threads": args.threads, "rows": rows,
              "note": "val/test MAE on the first LIMIT molecules of the standard validation/test splits"}
    table = [[r["model"], f"failed: {r['error']}", "", "", r["wall_s"]] if "error" in r else
             [r["model"], f"{r['val_mae_meV']:.1f}", f"{r['test_mae_meV']:.1f}", f"{r['train_s']:.0f}", r["wall_s"]]
             for r in rows]
    write_result(RESULTS / "short_qm9_runs", f"Short QM9 runs: gap, {args.limit} molecules per split, "
                 f"{args.epochs} epochs", report,
                 md_table(["model", "val MAE (meV)", "test MAE (meV)", "training s", "wall s"], table))

if __name__ == "__main__":
    main()
