"""Time to accuracy: validation gap MAE reached within a fixed budget of CPU training on full QM9.

    python -m benchmarks.accuracy.time_to_accuracy --config best     # 60 minutes, the best configuration found
    python -m benchmarks.accuracy.time_to_accuracy --config paper    # 60 minutes, the paper-size EGNN
    python -m benchmarks.accuracy.time_to_accuracy --config best --report-only   # re-read a finished run

Each run is ``se3mol train`` on the full standard training split (110,000 molecules), fixed seed 0,
with ``--max-time`` set to the budget: the run ends when the budget is spent (validation passes
included) and its cosine learning-rate schedule is fitted to the steps that fit in it. The curve is
the validation MAE after every epoch (and after the last, partial one) against the wall-clock time
spent. Run it alone on the machine: other jobs slow it down, and the load average before and after is
recorded. The test MAE of the best checkpoint is measured afterwards, outside the budget.

Writes ``benchmarks/accuracy/results/time_to_accuracy.{json,md}`` (one entry per configuration, others kept)
and ``time_to_accuracy.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks._results import ROOT, machine, results_dir, write_result

RESULTS = results_dir(__file__)

CONFIGS = {
    # Satorras et al.'s QM9 EGNN: 7 layers x 128 on the full graph, batch 96, lr 5e-4.
    "paper": {"model": "egnn", "set": {"hidden": 128, "layers": 7}, "batch_size": 96, "lr": 5e-4},
    # Best found: shallower (4 x 128, 1.7x the steps per second) and smaller batches (3x the updates).
    "best": {"model": "egnn", "set": {"hidden": 128, "layers": 4}, "batch_size": 32, "lr": 5e-4},
}


def train_command(name: str, minutes: float, out: Path) -> list[str]:
    c = CONFIGS[name]
    cmd = [sys.executable, "-m", "se3mol", "train", "--model", c["model"], "--dataset", "qm9", "--target", "gap",
           "--max-time", f"{minutes:g}m", "--epochs", "1000", "--batch-size", str(c["batch_size"]),
           "--lr", str(c["lr"]), "--seed", "0", "--out", str(out)]
    for k, v in c["set"].items():
        cmd += ["--set", f"{k}={v}"]
    return cmd


def read_curve(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [{"epoch": int(r["epoch"]), "step": int(r["step"]), "time_s": float(r["time_s"]),
             "val_mae_gap_meV": float(r["val_mae_gap_meV"]), "lr": float(r["lr"]), "weights": r["weights"]}
            for r in rows]


def load_configurations(path: Path = RESULTS / "time_to_accuracy.json") -> dict[str, dict]:
    """The measured configurations by name (``{}`` before the first run)."""
    if not path.exists():
        return {}
    report = json.loads(path.read_text())
    return report.get("configurations", report)  # results written before the shared writer: the bare mapping


def write_report(results: dict) -> None:
    lines = ["Validation gap MAE (meV, 10,000 molecules) against wall-clock training time (validation included) "
             "on the full QM9 training split, seed 0, learning-rate schedule fitted to the budget by `--max-time`.",
             "", "| configuration | command | budget min | epochs | best val MAE meV | test MAE meV "
             "| load before/after | threads |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        lines.append(f"| {name} | `{r['command']}` | {r['budget_min']:g} | {r['curve'][-1]['epoch']} | "
                     f"{min(p['val_mae_gap_meV'] for p in r['curve']):.1f} | {r['test_mae_gap_meV']:.1f} | "
                     f"{r['load_before']:.2f}/{r['load_after']:.2f} | {r['threads']} |")
    for name, r in results.items():
        lines += ["", f"## {name}", "", "| minutes | epoch | step | val MAE meV | lr | weights |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {p['time_s'] / 60:.1f} | {p['epoch']} | {p['step']} | {p['val_mae_gap_meV']:.1f} | "
                  f"{p['lr']:.2e} | {p['weights']} |" for p in r["curve"]]
    # The header's command is the last run's; each configuration's training command is in its row.
    write_result(RESULTS / "time_to_accuracy", "Time to accuracy: QM9 gap on a CPU budget",
                 {"configurations": results}, lines)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, r in results.items():
            ax.plot([p["time_s"] / 60 for p in r["curve"]], [p["val_mae_gap_meV"] for p in r["curve"]], "o-",
                    label=name)
        ax.axhline(120, color="grey", ls="--", lw=1, label="goal 120 meV")
        ax.set(xlabel="training time (min)", ylabel="val gap MAE (meV)", yscale="log",
               title="QM9 gap: time to accuracy (2-core CPU)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "time_to_accuracy.png", dpi=120)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: no plot: {exc}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs", help="where run directories go")
    ap.add_argument("--report-only", action="store_true", help="summarise an existing run directory")
    args = ap.parse_args()
    out = args.runs / f"tta-{args.config}"
    cmd = train_command(args.config, args.minutes, out)
    shown = "se3mol " + shlex.join(cmd[3:]).replace(str(ROOT) + "/", "")
    threads = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    if not args.report_only:
        subprocess.run(cmd, check=True)
    results = load_configurations()
    done = (out / "results.json").exists()  # --report-only on a run still going: its curve so far
    run = json.loads((out / "results.json").read_text()) if done else {"test_mae": {"gap": float("nan")},
                                                                       "best_epoch": None}
    results[args.config] = {
        "command": shown, "budget_min": args.minutes, "threads": threads,
        "load_before": load_before if not args.report_only else results.get(args.config, {}).get("load_before", -1),
        "load_after": os.getloadavg()[0] if not args.report_only else results.get(args.config, {}).get(
            "load_after", -1),
        "curve": read_curve(out), "test_mae_gap_meV": run["test_mae"]["gap"], "best_epoch": run["best_epoch"],
        "finished": done,
        "wall_s_with_test": round(time.perf_counter() - t, 1) if not args.report_only else None,
        "machine": machine(),
    }
    write_report(results)
    print(json.dumps(results[args.config]["curve"][-1]))


if __name__ == "__main__":
    main()
