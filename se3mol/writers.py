"""Writers: prediction rows (CSV, JSON Lines) and SD files of conformers; streamed, written atomically.

Output to a path goes to a temporary file next to it and is renamed into place only when
everything was written, so a failed run never leaves a complete-looking file behind. :func:`atomic_open`
is that one atomic write, for any file se3mol writes. A temporary file names the process writing it, so that a
later write of the same file removes what a killed writer (SIGKILL, the OOM killer, a power cut) left behind,
and never the file of a writer still running.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self from Python 3.11; only read by type checkers here

FORMATS = ("csv", "jsonl")

__all__ = ["FORMATS", "RowWriter", "SDFWriter", "atomic_open", "atomic_write_text", "file_mode"]


class _Output:
    """Where a writer writes: a temporary file renamed over ``path`` on success (:func:`atomic_open`), or a
    stream (default stdout) when there is no path (``None`` or ``"-"``)."""

    def __init__(self, path: str | os.PathLike | None, stream: TextIO | None) -> None:
        self.path = Path(path) if path is not None and str(path) != "-" else None
        self._stream = stream
        self._fh: IO[str] | None = None
        self._output = contextlib.ExitStack()

    def __enter__(self) -> Self:
        if self.path is not None:
            self._fh = self._output.enter_context(atomic_open(self.path, suffix=".part", make_parents=False))
        else:
            self._fh = self._stream or sys.stdout
        self._start()
        return self

    def _start(self) -> None:
        """What a writer writes first (a header), once the output is open."""

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.path is None and self._fh is not None and exc_type is None:
            self._fh.flush()
        self._output.__exit__(exc_type, exc, tb)


class RowWriter(_Output):
    """Write rows (dicts with a fixed set of ``columns``) to ``path`` or stdout.

    Use as a context manager; on an exception inside the block, the temporary file is removed and
    the destination is left untouched.
    """

    def __init__(self, columns: Sequence[str], path: str | os.PathLike | None = None, fmt: str = "csv",
                 stream: TextIO | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; choose {', '.join(FORMATS)}")
        super().__init__(path, stream)
        self.columns = list(columns)
        self.fmt = fmt
        self._csv: Any = None
        self.rows_written = 0

    def _start(self) -> None:
        if self.fmt == "csv":
            assert self._fh is not None  # opened by __enter__
            self._csv = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore",
                                       lineterminator="\n")
            self._csv.writeheader()

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        assert self._fh is not None
        for row in rows:
            if self.fmt == "csv":
                self._csv.writerow({k: _csv_value(row.get(k)) for k in self.columns})
            else:
                self._fh.write(json.dumps({k: _json_value(row.get(k)) for k in self.columns}) + "\n")
            self.rows_written += 1
        self._fh.flush()


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.10g}"
    return v


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class SDFWriter(_Output):
    """Write RDKit molecules as SD records (molblock, data fields, ``$$$$``) to ``path`` or stdout.

    Atomic like :class:`RowWriter`: with a path, records go to a temporary file next to it that is renamed
    into place only when the block ends without an exception, so a failed run leaves no half-written SDF.
    Data-field values are written on one line each (newlines become spaces): SD readers take a blank line
    as the end of a value.

    >>> import io
    >>> from rdkit import Chem
    >>> buf = io.StringIO()
    >>> with SDFWriter(stream=buf) as w:
    ...     w.write(Chem.MolFromSmiles("C"), name="methane", properties={"method": "test"})
    >>> buf.getvalue().splitlines()[0], "> <method>" in buf.getvalue(), buf.getvalue().rstrip().endswith("$$$$")
    ('methane', True, True)
    """

    def __init__(self, path: str | os.PathLike | None = None, stream: TextIO | None = None) -> None:
        super().__init__(path, stream)
        self.records_written = 0

    def write(self, mol: Any, conf_id: int = -1, name: str = "",
              properties: dict[str, Any] | None = None) -> None:
        """Write conformer ``conf_id`` of the RDKit molecule ``mol`` as one record titled ``name``."""
        from rdkit import Chem

        assert self._fh is not None
        block = Chem.MolToMolBlock(mol, confId=conf_id, kekulize=True)
        lines = block.split("\n")
        lines[0] = " ".join(name.split())  # the title line: one line, never a data field
        parts = ["\n".join(lines).rstrip("\n"), "\n"]
        for key, value in (properties or {}).items():
            parts.append(f"> <{key}>\n{_sd_value(value)}\n\n")
        parts.append("$$$$\n")
        self._fh.write("".join(parts))
        self._fh.flush()
        self.records_written += 1


def _sd_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.10g}"
    text = " ".join(str(v).splitlines()).strip()
    return text


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", *, suffix: str = ".tmp",
                make_parents: bool = True) -> Iterator[IO]:
    """Write ``path`` atomically: the block writes a temporary file next to it (same directory, so the rename is
    atomic), which on a normal exit is flushed, fsynced, given the permissions a plain ``open()`` would give and
    renamed over ``path``; on an exception it is removed and ``path`` is left as it was.

    The temporary file is ``.NAME.PID@HOST.XXXXXXXX<suffix>`` (the writing process, the machine, 8 random
    characters), hidden, and says by its name that it is unfinished. Before it is made, the temporary files of
    ``path`` with the same suffix that processes no longer running on this machine left behind (a writer killed
    mid-write) are removed; a running writer's file, another machine's (on a shared file system) and names of
    another form are left alone. ``mode`` is ``"w"`` (text, UTF-8, newlines as written) or ``"wb"``.

    Raises:
        OSError: if the directory does not exist and ``make_parents`` is false, or the file cannot be written.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_open(target) as fh:
    ...     _ = fh.write("done\\n")
    >>> target.read_text(), [p.name for p in target.parent.iterdir()]
    ('done\\n', ['out.txt'])
    """
    path = Path(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise OSError(f"output directory {path.parent} does not exist")
    _remove_dead_writers_temporaries(path, suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_host()}.", suffix=suffix, dir=path.parent)
    text = "b" not in mode
    try:
        with os.fdopen(fd, mode, encoding="utf-8" if text else None, newline="" if text else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@functools.cache
def _host() -> str:
    """This machine's name as temporary names give it: no dots (they separate the name's parts), at most 32 chars."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:32] or "host"


def _remove_dead_writers_temporaries(path: Path, suffix: str) -> None:
    """Remove the temporary files of ``path`` (``suffix``) whose writers, on this machine, are no longer running."""
    prefix = f".{path.name}."
    ours = re.compile(rf"{re.escape(prefix)}(\d+)@{re.escape(_host())}\.[a-z0-9_]{{8}}{re.escape(suffix)}")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return  # mkstemp will say what is wrong with the directory
    for entry in entries:
        if not entry.name.startswith(prefix) or (m := ours.fullmatch(entry.name)) is None:
            continue
        if not _running(int(m[1])) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):  # another run may have removed it first
                os.unlink(entry.path)


def _running(pid: int) -> bool:
    """Whether process ``pid`` is running on this machine; ``True`` where that cannot be told."""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # os.kill(pid, 0) would end the process on Windows
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, and is another user's
        return True
    return True


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_open`), creating its directory if needed."""
    with atomic_open(path) as fh:
        fh.write(text)


def file_mode() -> int:
    """The permissions a plain ``open()`` would give a new file (0666 less the umask)."""
    # mkstemp creates 0600 files; a finished file should get the permissions a plain open() would give.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
