"""What ``se3mol conformers`` is asked for: SMILES arguments, SMILES files and stdin -> :class:`SmilesInput` s,
and the seed each molecule gets (:func:`derive_seed`).

A bad input is a :class:`SmilesInput` with ``error`` set, never an exception, so that one bad molecule does
not stop the others. SMILES lines are read as SMILES files are everywhere (:func:`se3mol.io.smiles_lines`).
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from rdkit import Chem

from se3mol.chem import rdkit_from_smiles
from se3mol.io.base import NotTextError, open_stdin, open_text
from se3mol.io.smiles import smiles_lines

__all__ = ["SmilesInput", "derive_seed", "molecule_from_smiles", "read_smiles_inputs"]

# Extensions of molecule files that conformers does not take (it reads SMILES, not 3D structures).
_STRUCTURE_EXTENSIONS = (".sdf", ".sd", ".mol", ".mol2", ".xyz", ".extxyz", ".pdb", ".gz")


@dataclass
class SmilesInput:
    """One molecule asked for: a SMILES and its name, or the reason it could not be read.

    Attributes:
        index: 0-based position across all inputs, in input order.
        source: ``"argument"``, ``"-"`` (stdin) or the file path.
        line: 1-based line in ``source`` (``None`` for an argument).
        smiles: the SMILES as given (stripped).
        name: the name after the SMILES on its line, else ``""``.
        error: why this input is not a molecule (``None`` if it may be one).
    """

    index: int
    source: str
    smiles: str
    name: str = ""
    line: int | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        """Name if given, else the SMILES: what records and summaries call the molecule."""
        return self.name or self.smiles

    @property
    def where(self) -> str:
        """Where the input came from, for error messages: ``smiles.txt:3`` or ``argument 2``."""
        if self.line is None:
            return f"argument {self.index + 1}" if self.source == "argument" else self.source
        return f"{self.source}:{self.line}"


def read_smiles_inputs(inputs: Sequence[str], stdin: TextIO | None = None) -> list[SmilesInput]:
    """Turn command-line inputs into molecules to generate, in order.

    Each input is ``"-"`` (SMILES lines from ``stdin``), an existing file (SMILES lines), or else a SMILES
    string. An existing path always wins, so a file named ``CCO`` in the working directory is read as a
    file. SMILES lines hold ``SMILES [name]`` separated by whitespace (tab or comma also work, as in .smi
    and CSV exports); blank lines, ``#`` comments and a ``smiles`` column header are skipped.

    An input that is neither an existing file nor a valid SMILES, and a bad SMILES line, become a
    :class:`SmilesInput` with ``error`` set; they never raise.

    Raises:
        OSError: if an existing file cannot be read (permissions, a directory).
    """
    out: list[SmilesInput] = []
    for arg in inputs:
        if arg == "-":
            try:
                with open_stdin(stdin) as fh:
                    out.extend(_smiles_inputs(fh, "-", len(out)))
            except (NotTextError, EOFError, zlib.error) as exc:
                out.append(SmilesInput(len(out), "-", "-", error=f"stdin: {exc or type(exc).__name__}"))
        elif os.path.exists(arg):
            if os.path.isdir(arg):
                raise IsADirectoryError(f"{arg} is a directory, not a SMILES file")
            if arg.lower().endswith(_STRUCTURE_EXTENSIONS):
                out.append(SmilesInput(len(out), arg, arg, error=(
                    f"{arg} looks like a structure file; conformers reads SMILES (a string, a text file with one "
                    "SMILES per line, or '-' for stdin)")))
                continue
            try:  # as se3mol predict reads files: gzip told by its bytes, byte-order mark dropped, LF/CRLF ends
                with open_text(arg) as fh:
                    out.extend(_smiles_inputs(fh, arg, len(out)))
            except (NotTextError, EOFError, zlib.error) as exc:
                out.append(SmilesInput(len(out), arg, arg, error=f"{arg}: {exc or type(exc).__name__}"))
        else:
            item = SmilesInput(len(out), "argument", arg.strip())
            try:
                molecule_from_smiles(arg)
            except ValueError as exc:
                looks_like_path = os.sep in arg or os.path.splitext(arg)[1].lower() in (
                    ".smi", ".smiles", ".txt", ".csv", *_STRUCTURE_EXTENSIONS)
                reason = str(exc).replace(f"invalid SMILES {arg.strip()!r}", "").strip()
                sep = "" if reason.startswith(":") else " "  # "invalid SMILES 'x': why" leaves ": why"
                item.error = (f"no such file: {arg}" if looks_like_path
                              else f"{arg!r} is neither an existing file nor a valid SMILES{sep}{reason}".rstrip())
            out.append(item)
    return out


def _smiles_inputs(stream: Iterable[str], source: str, start: int) -> Iterator[SmilesInput]:
    for lineno, smiles, name in smiles_lines(stream):
        yield SmilesInput(start, source, smiles, name, line=lineno)
        start += 1


def molecule_from_smiles(smiles: str) -> Chem.Mol:
    """The molecule of ``smiles`` with explicit hydrogens (``Chem.AddHs``), sanitised, no coordinates.

    Raises:
        ValueError: for an empty or invalid SMILES (with RDKit's reason), or one without atoms.
    """
    return rdkit_from_smiles(smiles, add_hs=True)


def derive_seed(seed: int, canonical_smiles: str) -> int:
    """The seed of one molecule: a hash of the base ``seed`` and its canonical SMILES, in ``[0, 2^31 - 1)``.

    Depends on nothing else, so a molecule gets the same conformers alone or in a list, first or last.

    >>> derive_seed(0, "CCO") == derive_seed(0, "CCO") != derive_seed(1, "CCO")
    True
    """
    digest = hashlib.sha256(f"se3mol-conformers:{seed}:{canonical_smiles}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)
