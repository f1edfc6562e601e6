"""Which format an input is: the formats with a reader here, their extensions and aliases, and ASE's others.

Formats are told by extension (also under ``.gz``), else by ASE's guess from the name and first bytes.
"""

from __future__ import annotations

import os

from ase.io.formats import UnknownFileTypeError, extension2format, filetype, ioformats

from se3mol.io.base import extension

__all__ = ["FORMATS", "detect_format", "normalise_format"]

#: Formats with a reader of their own here; any other name ASE can read is passed through to ASE.
FORMATS: tuple[str, ...] = ("sdf", "xyz", "smi", "csv")

_EXTENSIONS = {
    ".sdf": "sdf", ".sd": "sdf", ".mol": "sdf",
    ".xyz": "xyz", ".extxyz": "xyz",
    ".smi": "smi", ".smiles": "smi", ".txt": "smi",
    ".csv": "csv", ".tsv": "csv",
}  # fmt: skip
# Names a user (or ASE's own guess) may give for the formats read here.
_ALIASES = {"mol": "sdf", "sd": "sdf", "extxyz": "xyz", "smiles": "smi", "tsv": "csv"}


def detect_format(path: str) -> str:
    """Guess the input format of ``path``: ``"sdf"``, ``"xyz"``, ``"smi"``, ``"csv"`` or an ASE format name.

    Known extensions decide (``.sdf .sd .mol``, ``.xyz .extxyz``, ``.smi .smiles .txt``, ``.csv .tsv``,
    each optionally followed by ``.gz``); otherwise ASE guesses from the name and the first bytes of the
    file.

    Raises:
        ValueError: if neither the extension nor the contents tell the format.
    """
    path = os.fspath(path)
    ext = extension(path)
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    try:
        guess = filetype(path, read=True, guess=False)
    except (UnknownFileTypeError, OSError) as exc:
        raise ValueError(_unknown_format_message(path, str(exc))) from None
    fmt = _ALIASES.get(guess, guess)
    if fmt not in FORMATS and not (fmt in ioformats and ioformats[fmt].can_read):
        raise ValueError(_unknown_format_message(path, f"ASE calls it {guess!r}, which it cannot read"))
    return fmt


def normalise_format(input_format: str) -> str:
    """A format name as given (any case, a leading dot, an alias such as ``mol`` or ``pdb``) -> the name read here.

    Raises:
        ValueError: for a name that is neither one of :data:`FORMATS` nor a format ASE can read.
    """
    name = input_format.strip().lower().lstrip(".")
    name = _ALIASES.get(name, name)
    if name in FORMATS:
        return name
    if name in ioformats and ioformats[name].can_read:
        return name
    if name in extension2format and extension2format[name].can_read:  # "pdb" -> "proteindatabank"
        return _ALIASES.get(extension2format[name].name, extension2format[name].name)
    raise ValueError(
        f"unknown input format {input_format!r}: use one of {', '.join(FORMATS)} or a format ASE can read "
        "(e.g. pdb, cif, traj)"
    )


def _unknown_format_message(path: str, why: str) -> str:
    return (
        f"cannot tell the format of {path!r} ({why}); give the input format explicitly: one of "
        f"{', '.join(FORMATS)} (extensions {', '.join(_EXTENSIONS)}) or a format ASE can read"
    )
