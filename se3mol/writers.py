"""Writers for prediction rows: CSV and JSON Lines, streamed, flushed per chunk, written atomically.

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
            parent = self.path.parent
            if not parent.is_dir():
                raise OSError(f"output directory {parent} does not exist")
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=parent)
            self._tmp = Path(tmp)
            self._fh = os.fdopen(fd, "w", newline="")
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
        if self._tmp is None:
            if self._fh is not None and exc_type is None:
                self._fh.flush()
            return
        assert self._fh is not None
        try:
            if exc_type is None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            self._fh.close()
            if exc_type is None:
                from se3mol.training.checkpoint import _umask_mode

                os.chmod(self._tmp, _umask_mode())
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()


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
