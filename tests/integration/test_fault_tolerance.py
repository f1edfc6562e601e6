"""A training process killed with SIGKILL mid-epoch resumes to the bit-identical result of an uninterrupted run.

Real processes: ``python -m se3mol train`` is started, caught while its ``last.pt`` holds a step in
the middle of an epoch, killed (no chance to clean up), and continued with ``--resume``. The final
metrics and every tensor of the final checkpoints (weights, EMA, optimizer, RNG states) must equal
those of a run that was never interrupted, to the last bit on CPU; no file in the run directory may
ever be truncated. A second test kills the atomic writer itself half-way through the bytes of a new
checkpoint, which the first can only hit by chance.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from se3mol.checkpoint import CheckpointError, atomic_save, read_checkpoint, remove_stale_temporaries
from tests.helpers.runs import (
    assert_no_truncated_files,
    differences,
    finish,
    kill_mid_epoch,
    load,
    metrics_without_time,
    results_without_time,
    run,
    run_env,
    squeezed,
    start,
    train_command,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# 48 training molecules in batches of 4: 12 steps per epoch, last.pt after every step; epochs 2-4 each
# offer the kill a window of steps 5-11 (a fast machine may run through one before a poll sees it).
ARGS = ["--limit", "48", "--epochs", "4", "--batch-size", "4", "--set", "hidden=16", "--set", "layers=2",
        "--save-every", "1", "--seed", "7", "--device", "cpu", "--target", "gap"]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    ref_dir, run_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    reference = start(train_command(*ARGS, "--out", str(ref_dir)))  # runs alongside the one to be killed
    victim = start(train_command(*ARGS, "--out", str(run_dir)))
    epoch, step_in_epoch, global_step = kill_mid_epoch(victim, run_dir, min_epoch=1, min_step=5)
    assert epoch >= 1 and 0 < step_in_epoch < 12 and global_step == 12 * epoch + step_in_epoch

    # Nothing the kill left behind is truncated; an interrupted write can only leave a hidden .tmp.
    temps = assert_no_truncated_files(run_dir)
    print(f"killed at epoch {epoch + 1}, step {step_in_epoch}/12 of it (global step {global_step}); "
          f"interrupted writes left: {temps or 'none'}")
    assert len(metrics_without_time(run_dir)) == epoch  # one row per finished epoch, nothing more

    _, err = run(train_command("--resume", str(run_dir)))
    assert squeezed(f"resumed {run_dir} at epoch {epoch}, step {global_step}") in squeezed(err)
    finish(reference)

    assert assert_no_truncated_files(run_dir) == []  # resume removed any stale temporary file
    assert metrics_without_time(run_dir) == metrics_without_time(ref_dir)
    assert results_without_time(run_dir) == results_without_time(ref_dir)
    for name in ("last.pt", "best.pt"):
        diffs = differences(load(run_dir / name), load(ref_dir / name))
        assert not diffs, f"{name} differs from the uninterrupted run: {diffs[:5]}"


# A child that starts replacing a checkpoint, writes half of the new bytes, says so, and waits to be killed.
_HALF_WRITE = """
import io, sys, time, torch
import se3mol.checkpoint as ckpt

path, marker = sys.argv[1], sys.argv[2]
real_save = torch.save

def half_then_hang(obj, fh):
    buf = io.BytesIO()
    real_save(obj, buf)
    data = buf.getvalue()
    fh.write(data[: len(data) // 2])
    fh.flush()
    open(marker, "w").close()
    time.sleep(600)

torch.save = half_then_hang
ckpt.atomic_save({"format_version": 1, "model": {}, "state_dict": {"w": torch.full((50_000,), 2.0)}}, path)
"""


def test_sigkill_in_the_middle_of_a_checkpoint_write_leaves_the_old_file(tmp_path):
    """The atomic writer itself, killed half-way through the bytes of a new last.pt."""
    last, marker = tmp_path / "last.pt", tmp_path / "writing"
    atomic_save({"format_version": 1, "model": {}, "state_dict": {"w": torch.full((50_000,), 1.0)}}, last)
    (tmp_path / ".notes.tmp").write_text("a user's file, not ours")
    child = subprocess.Popen([sys.executable, "-c", _HALF_WRITE, str(last), str(marker)], env=run_env(),
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.stderr.read()
        assert time.monotonic() < deadline, "the child never started writing"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=60)
    child.stderr.close()

    temps = [p for p in tmp_path.iterdir() if p.name.startswith(".last.pt.")]
    assert len(temps) == 1 and temps[0].suffix == ".tmp" and 0 < temps[0].stat().st_size
    with pytest.raises(CheckpointError):  # the half-written bytes are not a checkpoint ...
        read_checkpoint(temps[0])
    assert torch.equal(read_checkpoint(last)["state_dict"]["w"], torch.full((50_000,), 1.0))  # ... the old one is
    assert remove_stale_temporaries(tmp_path) == temps
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", "last.pt", "writing"]
