"""Wall time of short ``se3mol`` commands in fresh processes, against the floor every one of them pays: importing
torch.

    python -m benchmarks.speed.cli_startup [--repeats 5]

Each command runs ``--repeats`` times (after one unmeasured run that warms the file cache); the table gives the
median and the fastest. ``import torch`` alone is the floor for a command that runs a network; the difference is
what se3mol's own start-up adds (its imports, building the command line, loading the model).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._results import ROOT, md_table, results_dir, write_result

RESULTS = results_dir(__file__)
SE3MOL = [sys.executable, "-m", "se3mol"]

COMMANDS = {
    "python -c 'import torch' (floor)": [sys.executable, "-c", "import torch"],
    "se3mol --help": [*SE3MOL, "--help"],
    "se3mol train --help": [*SE3MOL, "train", "--help"],
    "se3mol predict examples/molecules.sdf (7 molecules, default ensemble)": [*SE3MOL, "predict",
                                                                             "examples/molecules.sdf"],
    "se3mol conformers CCO --method etkdg -n 1": [*SE3MOL, "conformers", "CCO", "--method", "etkdg", "-n", "1"],
}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-1000:]}")
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS / "cli_startup")
    args = p.parse_args()
    rows, data = [], {}
    for label, cmd in COMMANDS.items():
        timed(cmd)  # warm the file cache
        times = [timed(cmd) for _ in range(args.repeats)]
        data[label] = {"median_s": statistics.median(times), "min_s": min(times), "times_s": times}
        rows.append([label, f"{statistics.median(times):.2f}", f"{min(times):.2f}"])
        print(label, rows[-1][1:], file=sys.stderr, flush=True)
    lines = [f"Fresh processes, {args.repeats} runs each after one warm-up.", "",
             *md_table(["command", "median (s)", "fastest (s)"], rows)]
    write_result(args.out, "se3mol command start-up", {"repeats": args.repeats, "commands": data}, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
