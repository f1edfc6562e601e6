"""Helpers for tests that run ``python -m se3mol train`` as real processes: run, kill mid-epoch, compare.

Synchronisation is by polling files the run writes (with a deadline), never by sleeping for a
guessed time: a slow or loaded machine makes these tests slower, not flaky.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from tests.helpers import ROOT

# Keys that legitimately differ between two runs of one computation: wall time and the run directory.
RUN_SPECIFIC = {"elapsed", "time_s", "wall_time_s", "out"}


def train_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "se3mol", "train", *args]


def run_env() -> dict[str, str]:
    """This checkout first on the path, one thread per process (2 cores shared with other work)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def start(cmd: list[str]) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so torchrun and its workers can be signalled together)."""
    return subprocess.Popen(cmd, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err[-4000:]}"
    return out, err


def run(cmd: list[str], timeout: float = 600) -> tuple[str, str]:
    return finish(start(cmd), timeout)


def training_position(path: Path) -> tuple[int, int, int] | None:
    """(epoch, step_in_epoch, global_step) saved in ``last.pt``, or None while there is none yet."""
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)["training_state"]
    except FileNotFoundError:
        return None
    return st["epoch"], st["step_in_epoch"], st["global_step"]


def kill_mid_epoch(proc: subprocess.Popen, run_dir: Path, min_epoch: int = 1, min_step: int = 1,
                   timeout: float = 300) -> tuple[int, int, int]:
    """SIGKILL the run (its whole process group) while its ``last.pt`` is in the middle of an epoch.

    Polls ``last.pt``; when it shows step ``min_step`` or later (but not the end) of an epoch after
    ``min_epoch`` completed ones, stops the
    process group (SIGSTOP), reads ``last.pt`` again -- the run may have moved on meanwhile -- and
    kills it if that is still mid-epoch, else lets it continue and keeps polling. Returns the position
    that ``last.pt`` holds after the kill. Every read is a full ``torch.load(weights_only=True)``: a
    truncated ``last.pt`` at any moment fails the test.
    """
    pgid = os.getpgid(proc.pid)
    deadline = time.monotonic() + timeout
    last = run_dir / "last.pt"
    seen = None  # (inode, mtime) of the last.pt read last: every atomic replace makes a new inode
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before it was caught mid-epoch; "
                                 f"stderr:\n{proc.stderr.read()[-3000:]}")
        try:
            st = last.stat()
        except FileNotFoundError:
            st = None
        if st is None or (st.st_ino, st.st_mtime_ns) == seen:
            time.sleep(0.002)  # polling interval only; correctness never depends on it
            continue
        seen = (st.st_ino, st.st_mtime_ns)
        pos = training_position(last)
        if pos is not None and pos[0] >= min_epoch and pos[1] >= min_step:
            os.killpg(pgid, signal.SIGSTOP)
            pos = training_position(last)
            if pos[0] >= min_epoch and pos[1] > 0:
                os.killpg(pgid, signal.SIGKILL)
                proc.wait(timeout=60)
                proc.communicate()
                return pos
            os.killpg(pgid, signal.SIGCONT)
    os.killpg(pgid, signal.SIGKILL)
    raise AssertionError(f"no mid-epoch last.pt within {timeout} s")


def assert_no_truncated_files(run_dir: Path) -> list[str]:
    """Every ``.pt`` loads with ``weights_only=True``; anything unfinished is a hidden ``.*.tmp``.

    Returns the names of leftover temporary files (those of a write the kill interrupted).
    """
    temps = []
    for p in sorted(run_dir.iterdir()):
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            temps.append(p.name)  # named as unfinished; never read as a checkpoint
        elif p.suffix == ".pt":
            ckpt = torch.load(p, map_location="cpu", weights_only=True)
            assert "state_dict" in ckpt, p
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".csv":
            rows = list(csv.reader(p.open()))
            assert all(len(r) == len(rows[0]) for r in rows), p
    return temps


def squeezed(text: str) -> str:
    """``text`` without whitespace: rich wraps stderr lines at a width that depends on the paths in them."""
    return "".join(text.split())


def metrics_without_time(run_dir: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def results_without_time(run_dir: Path) -> dict[str, Any]:
    return strip(json.loads((run_dir / "results.json").read_text()))


def strip(x: Any) -> Any:
    """``x`` without the run-specific keys (wall time, run directory), recursively."""
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in RUN_SPECIFIC}
    if isinstance(x, list | tuple):
        return [strip(v) for v in x]
    return x


def differences(a: Any, b: Any, path: str = "", rtol: float = 0.0, atol: float = 0.0) -> list[str]:
    """Where two checkpoint-like structures differ (tensors and floats within ``rtol``/``atol``; 0: exactly)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{path}/{k}", rtol, atol)]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{path}[{i}]", rtol,
                                                                                         atol)]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return [f"{path}: {a.shape}/{a.dtype} != {b.shape}/{b.dtype}"]
        if rtol == 0 and atol == 0 or not a.is_floating_point():
            return [] if torch.equal(a, b) else [f"{path}: max |diff| {_maxdiff(a, b)}"]
        return [] if torch.allclose(a, b, rtol=rtol, atol=atol) else [f"{path}: max |diff| {_maxdiff(a, b)}"]
    if isinstance(a, float) and isinstance(b, float) and (rtol or atol):
        return [] if abs(a - b) <= atol + rtol * abs(b) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def load(path: Path) -> dict[str, Any]:
    return strip(torch.load(path, map_location="cpu", weights_only=True))
