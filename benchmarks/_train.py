"""``se3mol train`` in a process of its own, for the benchmarks that collect the results of short runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def train_run(args: list[str], out: Path, threads: int) -> tuple[dict[str, Any] | None, float, str]:
    """Run ``se3mol train ARGS --out OUT`` with ``threads`` OpenMP threads.

    Returns ``OUT/results.json`` (``None`` if the run failed), the wall time in seconds and the last line of
    its standard error (the failure's message)."""
    cmd = [sys.executable, "-m", "se3mol", "train", *args, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"se3mol train {' '.join(args)} failed:\n{proc.stderr[-800:]}", file=sys.stderr)
        return None, wall, (proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads((out / "results.json").read_text()), wall, ""
