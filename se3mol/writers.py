"""Writers: prediction rows (CSV, JSON Lines) and SD files of conformers; streamed, written atomically.

Output to a path goes to a temporary file next to it and is renamed into place only when
everything was written, so a failed run never leaves a complete-looking file behind.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

FORMATS = ("csv", "jsonl")

__all__ = ["FORMATS", "RowWriter", "SDFWriter"]


class RowWriter:
    """Write rows (dicts with a fixed set of ``columns``) to ``path`` or stdout.

    Use as a context manager; on an exception inside the block, the temporary file is removed and
    the destination is left untouched.
    """

    def __init__(self, columns: Sequence[str], path: str | os.PathLike | None = None, fmt: str = "csv",
                 stream: TextIO | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format {fmt!r}; choose {', '.join(FORMATS)}")
        self.columns = list(columns)
        self.fmt = fmt
        self.path = Path(path) if path is not None and str(path) != "-" else None
        self._stream = stream
        self._tmp: Path | None = None
        self._fh: TextIO | None = None
        self._csv: Any = None
        self.rows_written = 0

    def __enter__(self) -> RowWriter:
        if self.path is not None:
            self._fh, self._tmp = _open_temporary(self.path)
        else:
            self._fh = self._stream or sys.stdout
        if self.fmt == "csv":
            self._csv = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore",
                                       lineterminator="\n")
            self._csv.writeheader()
        return self

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        assert self._fh is not None
        for row in rows:
            if self.fmt == "csv":
                self._csv.writerow({k: _csv_value(row.get(k)) for k in self.columns})
            else:
                self._fh.write(json.dumps({k: _json_value(row.get(k)) for k in self.columns}) + "\n")
            self.rows_written += 1
        self._fh.flush()

    def __exit__(self, exc_type, exc, tb) -> None:
        _close_output(self._fh, self._tmp, self.path, exc_type is None)


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


class SDFWriter:
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
        self.path = Path(path) if path is not None and str(path) != "-" else None
        self._stream = stream
        self._tmp: Path | None = None
        self._fh: TextIO | None = None
        self.records_written = 0

    def __enter__(self) -> SDFWriter:
        if self.path is not None:
            self._fh, self._tmp = _open_temporary(self.path)
        else:
            self._fh = self._stream or sys.stdout
        return self

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

    def __exit__(self, exc_type, exc, tb) -> None:
        _close_output(self._fh, self._tmp, self.path, exc_type is None)


def _sd_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.10g}"
    text = " ".join(str(v).splitlines()).strip()
    return text


def _open_temporary(path: Path) -> tuple[TextIO, Path]:
    """A temporary file next to ``path`` (same directory, so the final rename is atomic)."""
    parent = path.parent
    if not parent.is_dir():
        raise OSError(f"output directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    return os.fdopen(fd, "w", newline=""), Path(tmp)


def _close_output(fh: TextIO | None, tmp: Path | None, path: Path | None, success: bool) -> None:
    """Flush stdout, or fsync + rename the temporary file into place on success and remove it otherwise."""
    if tmp is None:
        if fh is not None and success:
            fh.flush()
        return
    assert fh is not None and path is not None
    try:
        if success:
            fh.flush()
            os.fsync(fh.fileno())
        fh.close()
        if success:
            os.chmod(tmp, file_mode())
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_mode() -> int:
    """The permissions a plain ``open()`` would give a new file (0666 less the umask)."""
    # mkstemp creates 0600 files; a finished file should get the permissions a plain open() would give.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask
