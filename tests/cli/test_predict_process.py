"""se3mol predict as a real process in real pipes: rows flushed per batch, quiet SIGPIPE, full disk,
Ctrl-C, crafted and foreign checkpoints, and examples/shard.sh run as written."""

import csv
import errno
import io
import os
import select
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from se3mol.cli.app import app
from se3mol.cli.common import EXIT_BAD_MODEL, EXIT_INTERRUPTED, EXIT_OK, EXIT_OUTPUT, EXIT_TERMINATED
from tests.helpers import FIXTURES, ROOT
from tests.helpers import CodeRunningPickle as _Evil

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
SE3MOL = [sys.executable, "-m", "se3mol"]
NOISE = ("Traceback", "BrokenPipeError", "Exception ignored")


def _read_line(stream, timeout: float) -> str:
    """One line from a pipe, or fail after ``timeout`` seconds (never hangs the test suite)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no complete line within {timeout} s (got {buf!r})"
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 1)
            assert chunk, f"stream closed after {buf!r}"
            buf += chunk
    return buf.decode()


def test_rows_reach_the_pipe_before_the_input_ends(tiny_checkpoint):
    proc = subprocess.Popen([*SE3MOL, "predict", "-", "--input-format", "smi", "--batch-size", "1",
                             "--model", str(tiny_checkpoint)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV)
    try:
        proc.stdin.write(b"CCO ethanol\n")
        proc.stdin.flush()
        header = _read_line(proc.stdout, 120)
        row = _read_line(proc.stdout, 60)
        assert header.startswith("index,id,")
        assert row.startswith("0,ethanol,") and ",ok," in row
        assert proc.poll() is None  # still waiting for more input: the row came while the stream was open
        proc.stdin.write(b"C methane\n")
        proc.stdin.flush()
        assert _read_line(proc.stdout, 60).startswith("1,methane,")
        proc.stdin.close()
        assert proc.wait(60) == EXIT_OK
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def big_sdf(tmp_path_factory):
    """A few thousand records: far more output than a pipe buffer holds."""
    path = tmp_path_factory.mktemp("big") / "big.sdf"
    path.write_text((FIXTURES / "good.sdf").read_text() * 600)
    return path


def test_sigpipe_from_head_ends_quietly(tiny_checkpoint, big_sdf):
    cmd = " ".join([*SE3MOL, "predict", str(big_sdf), "--model", str(tiny_checkpoint), "--batch-size", "16"])
    r = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd} | head -n 3"], capture_output=True, text=True,
                       env=ENV, timeout=300)
    assert r.returncode == EXIT_OK, r.stderr
    assert len(r.stdout.splitlines()) == 3
    assert not any(x in r.stderr for x in NOISE), r.stderr


def test_full_disk_on_stdout_is_exit_5_with_a_message(tiny_checkpoint):
    with open("/dev/full", "w") as full:
        r = subprocess.run([*SE3MOL, "predict", str(FIXTURES / "good.sdf"), "--model", str(tiny_checkpoint)],
                           stdout=full, stderr=subprocess.PIPE, text=True, env=ENV, timeout=300)
    assert r.returncode == EXIT_OUTPUT
    assert "cannot write output: No space left on device" in r.stderr
    assert not any(x in r.stderr for x in NOISE), r.stderr


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_full_disk_on_output_file_leaves_no_file_and_the_old_one_intact(where, tiny_checkpoint, tmp_path,
                                                                        monkeypatch):
    import se3mol.writers

    out = tmp_path / "scores.csv"
    out.write_text("old results\n")
    if where == "fsync":
        monkeypatch.setattr(se3mol.writers.os, "fsync", _enospc)
    else:  # the first batch is written, the second hits the full disk
        real = se3mol.writers.RowWriter.write
        calls = []

        def write(self, rows):
            calls.append(1)
            if len(calls) > 1:
                _enospc()
            real(self, rows)

        monkeypatch.setattr(se3mol.writers.RowWriter, "write", write)
    r = CliRunner().invoke(app, ["predict", str(FIXTURES / "good.sdf"), "--model", str(tiny_checkpoint),
                                 "--batch-size", "2", "-o", str(out)])
    assert r.exit_code == EXIT_OUTPUT
    assert "No space left on device" in r.stderr and f"{out} was not written" in r.stderr
    assert out.read_text() == "old results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]  # no temporary file left


def _default_signals() -> None:
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored across exec
    # (Python then installs no KeyboardInterrupt handler): give the child the terminal's default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, EXIT_INTERRUPTED, b"interrupted"),
                                                   (signal.SIGTERM, EXIT_TERMINATED, b"terminated")])
def test_ctrl_c_or_sigterm_leaves_no_output_file(sig, code, word, tiny_checkpoint, tmp_path):
    out = tmp_path / "scores.csv"
    proc = subprocess.Popen([*SE3MOL, "predict", "-", "--input-format", "sdf", "--batch-size", "1", "-o", str(out),
                             "--model", str(tiny_checkpoint)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=ENV, preexec_fn=_default_signals)
    try:
        proc.stdin.write((FIXTURES / "good.sdf").read_bytes())
        proc.stdin.flush()
        deadline = time.monotonic() + 120
        while not any(p.name.endswith(".part") for p in tmp_path.iterdir()):  # scoring has started
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1)
        proc.send_signal(sig)  # stdin is still open: the reader thread is blocked on it
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code, stderr
    assert word + b" after" in stderr and b"Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_crafted_and_foreign_checkpoints_exit_4_and_run_no_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": _Evil()}, evil)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "evil.pt").read_bytes()[:200])
    for path, message in [(evil, "a safe load refuses"), (foreign, "not an se3mol checkpoint"),
                          (truncated, "cannot load model")]:
        r = subprocess.run([*SE3MOL, "predict", str(FIXTURES / "good.sdf"), "--model", str(path)],
                           capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == EXIT_BAD_MODEL, (path, r.stderr)
        assert "cannot load model" in r.stderr and message in r.stderr.replace("\n", " "), r.stderr
        assert r.stdout == ""
    assert not (tmp_path / "PWNED_BY_CHECKPOINT").exists()


def test_bad_shard_is_a_usage_error():
    for spec in ["2/2", "x", "1/0", "-1/3"]:
        r = CliRunner().invoke(app, ["predict", str(FIXTURES / "good.sdf"), "--shard", spec])
        assert r.exit_code == 2 and "--shard" in r.stderr, (spec, r.stderr)


def test_shard_example_runs_as_written_and_merges_to_the_unsharded_output(tmp_path):
    if not (ROOT / "models" / "qm9-egnn-all12.pt").exists():
        pytest.skip("shipped model not present")
    wrapper = tmp_path / "se3mol"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m se3mol \"$@\"\n")
    wrapper.chmod(0o755)
    env = {**ENV, "SE3MOL": str(wrapper), "TMPDIR": str(tmp_path)}
    r = subprocess.run(["bash", str(ROOT / "examples" / "shard.sh")], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    merged = list(csv.DictReader((tmp_path / "se3mol-sharded-scores.csv").open()))
    whole = subprocess.run([*SE3MOL, "predict", "molecules.sdf", "molecules.xyz", "molecules.smi"],
                           cwd=ROOT / "examples", capture_output=True, text=True, env=ENV, timeout=300)
    assert whole.returncode == 0, whole.stderr
    expected = list(csv.DictReader(io.StringIO(whole.stdout)))
    assert [x["index"] for x in merged] == [str(k) for k in range(len(expected))]
    assert [(x["id"], x["status"]) for x in merged] == [(x["id"], x["status"]) for x in expected]
    assert [float(x["gap_meV"]) for x in merged] == pytest.approx([float(x["gap_meV"]) for x in expected],
                                                                  rel=1e-4)
