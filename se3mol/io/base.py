"""What every format reader of :mod:`se3mol.io` shares: the :class:`Parsed` record a reader hands back, lazy
parsing, and small text helpers (opening plain or gzipped text, telling text from binary, reading a value).

Nothing here reads a format; :mod:`se3mol.io.records` drives the readers and numbers their records.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from se3mol.molecule import Molecule

__all__ = [
    "LazyParsed", "Parsed", "extension", "is_text", "number_or_text", "open_text", "os_error_message", "plain_value",
    "ready",
]


@dataclass
class Parsed:
    """What a format reader hands back for one record; read_records numbers, names and validates it."""

    name: str = ""
    molecule: Molecule | None = None
    error: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    perceive_smiles: bool = False


#: A delimited record, parsed only when called: records of other shards are never parsed.
LazyParsed = Callable[[], Parsed]


def ready(parsed: Parsed) -> LazyParsed:
    """A record already parsed (an error found while delimiting it), in the lazy form readers yield."""
    return lambda: parsed


# ASCII characters that str.isprintable() rejects, less tab and line ends.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def is_text(text: str) -> bool:
    """No undecodable bytes (read as U+FFFD) and no control characters other than tabs and line ends."""
    if text.isascii():  # the usual case, checked in C rather than character by character
        return _ASCII_CONTROL.search(text) is None
    return "\ufffd" not in text and all(c.isprintable() or c in "\t\r\n" for c in text)


def extension(path: str) -> str:
    """The lower-cased extension of ``path`` with a trailing ``.gz`` looked through: ``a.SDF.gz`` -> ``.sdf``."""
    stem = path[:-3] if path.lower().endswith(".gz") else path
    return os.path.splitext(stem)[1].lower()


def open_text(path: str) -> TextIO:
    """Open a plain or gzipped (``.gz``) UTF-8 text file for reading."""
    # Undecodable bytes become U+FFFD and then fail as bad records, rather than aborting the file.
    if path.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def os_error_message(exc: BaseException) -> str:
    """An I/O error as a short message: its reason and the file it names."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename!r}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def number_or_text(text: str) -> Any:
    """``text`` as a ``float`` where it reads as a number, else unchanged."""
    try:
        return float(text)
    except ValueError:
        return text


def plain_value(value: Any) -> Any:
    """numpy scalars as Python numbers, so properties print and serialise plainly."""
    return value.item() if isinstance(value, np.generic) else value
