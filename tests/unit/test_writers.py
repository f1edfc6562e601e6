"""se3mol.writers.atomic_open: what a killed writer leaves behind is removed by the next write of the same file,
and a running writer's temporary file never is."""

import os
import re
import signal
import subprocess
import sys

from se3mol.writers import RowWriter, atomic_open
from tests.helpers import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# A writer that starts writing `out.csv` as `se3mol predict -o` does, says so, then waits to be killed.
_WRITER = """
import sys, time
from se3mol.writers import RowWriter
with RowWriter(["id"], sys.argv[1]) as w:
    w.write([{"id": "half"}])
    print("writing", flush=True)
    time.sleep(600)
"""


def _start_writer(out):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(out)], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline() == "writing\n"
    return proc


def _temporaries(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_a_later_write_removes_what_a_killed_writer_left_and_never_a_running_writers_file(tmp_path):
    # Issue 31 #13: `predict -o OUT` killed with SIGKILL left a hidden .part file that no later run removed.
    out = tmp_path / "out.csv"
    killed = _start_writer(out)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    (left,) = _temporaries(tmp_path)
    assert re.fullmatch(rf"\.out\.csv\.{killed.pid}@[\w-]+\.[a-z0-9_]{{8}}\.part", left)

    running = _start_writer(out)  # the next run of the same output removes it
    try:
        (live,) = _temporaries(tmp_path)
        assert live != left and f".{running.pid}@" in live
        dead = left.replace(left[-13:-5], "deadbeef")  # another killed writer's file, made by hand
        other_host = re.sub(r"@[\w-]+\.", "@elsewhere.", left)  # a writer on another machine sharing the disk
        old_form = re.sub(r"\.\d+@[\w-]+\.", ".", left)  # made by an earlier version: whose, unknown
        other_output = left.replace(".out.csv.", ".other.csv.")
        for name in (dead, other_host, old_form, other_output):
            (tmp_path / name).write_text("half-written")

        with RowWriter(["id"], out) as w:
            w.write([{"id": "done"}])

        assert out.read_text() == "id\ndone\n"
        assert _temporaries(tmp_path) == sorted([live, other_host, old_form, other_output])
    finally:
        running.kill()
        running.wait(30)
    with atomic_open(out, suffix=".part") as fh:
        fh.write("last\n")
    assert _temporaries(tmp_path) == sorted([other_host, old_form, other_output])
    assert out.read_text() == "last\n"


def test_a_writer_in_this_process_keeps_its_own_file(tmp_path):
    out = tmp_path / "out.txt"
    with atomic_open(out) as first:
        first.write("outer\n")
        with atomic_open(out) as second:  # the same file written twice at once: the first is not removed
            second.write("inner\n")
        assert len(_temporaries(tmp_path)) == 1
    assert out.read_text() == "outer\n"
