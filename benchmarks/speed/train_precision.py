"""Does bfloat16 autocast pay for training on this CPU? Training throughput in float32 and bfloat16.

    python -m benchmarks.speed.train_precision                  # EGNN 4x128 / batch 32 and 4x64 / batch 64, 1 thread
    python -m benchmarks.speed.train_precision --threads 2 --steps 60

For each configuration, the same QM9 training batches go through forward, backward and an AdamW step,
under ``torch.autocast("cpu", dtype=torch.bfloat16)`` and without it, alternating in rounds so that
both see the same machine load; the ratio of their throughputs is the figure (timings on this shared
machine move by up to 1.5x from hour to hour, ratios much less). Also the relative deviation of the
bfloat16 forward pass from the float32 one on the same weights. bfloat16 needs AVX512-BF16 or AMX to be
native; elsewhere it is emulated and slower, which this measures too.

Writes ``benchmarks/speed/results/train_precision.{json,md}`` (``--out`` stem).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks._results import md_table, results_dir, write_result

RESULTS = results_dir(__file__)
CONFIGS = ((128, 4, 32), (64, 4, 64))


def cpu_flags() -> dict[str, bool]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return {f: f in text for f in ("avx512_bf16", "amx_bf16")}


def measure(hidden: int, layers: int, batch_size: int, steps: int, rounds: int) -> dict:
    from se3mol.data import load_qm9, standard_split
    from se3mol.graph import GraphConfig
    from se3mol.nn import build_model
    from se3mol.targets import get_target

    q = load_qm9(verbose=False)
    train = standard_split()["train"]
    batches = [q.batch(train[k * batch_size:(k + 1) * batch_size], GraphConfig(), ["gap"]) for k in range(steps)]
    torch.manual_seed(0)
    model = build_model("egnn", [get_target("gap")], {"hidden": hidden, "layers": layers})
    opt = torch.optim.AdamW(model.parameters(), 5e-4)

    def run(bf16: bool) -> float:
        t0 = time.perf_counter()
        for b in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = (model(b)["gap"].float() - b.y[:, 0]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return len(batches) * batch_size / (time.perf_counter() - t0)

    run(False), run(True)  # warm-up
    rates: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    for _ in range(rounds):
        rates["float32"].append(run(False))
        rates["bfloat16"].append(run(True))
    with torch.no_grad():
        ref = model(batches[0])["gap"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(batches[0])["gap"].float()
    best = {k: max(v) for k, v in rates.items()}
    return {"hidden": hidden, "layers": layers, "batch_size": batch_size, "steps": steps, "rounds": rounds,
            "mol_per_s": best, "speedup_bf16": best["bfloat16"] / best["float32"],
            "rel_deviation_bf16": float((low - ref).abs().max() / ref.abs().max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=30, help="batches per timed pass")
    ap.add_argument("--rounds", type=int, default=3, help="alternating float32 / bfloat16 passes")
    ap.add_argument("--out", type=Path, default=RESULTS / "train_precision")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(h, la, b, args.steps, args.rounds) for h, la, b in CONFIGS]
    result = {"threads": args.threads, "flags": cpu_flags(), "rows": rows}
    write_result(args.out, "Training in float32 and bfloat16 autocast (EGNN on QM9 batches)", result, [
        f"CPU flags {result['flags']}; best of {args.rounds} alternating passes of {args.steps} batches.", "",
        *md_table(["EGNN", "batch", "float32 mol/s", "bfloat16 mol/s", "speed-up",
                   "bf16 max rel. deviation of the output"],
                  [[f"{r['layers']}x{r['hidden']}", r["batch_size"], f"{r['mol_per_s']['float32']:.0f}",
                    f"{r['mol_per_s']['bfloat16']:.0f}", f"{r['speedup_bf16']:.2f}x", f"{r['rel_deviation_bf16']:.1e}"]
                   for r in rows])])

if __name__ == "__main__":
    main()
