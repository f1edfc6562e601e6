"""SMILES files: one molecule per line, ``SMILES [name]``, embedded in 3D (RDKit ETKDG, then MMFF or UFF).

The SMILES is the line's first token; it ends at the first space, tab or comma (none of which a SMILES holds).
The name is everything after that one separator, stripped: spaces and commas within it are part of the name
(``CCO ethyl alcohol, absolute`` is named ``ethyl alcohol, absolute``). Tables with quoted fields and more
columns are CSV input (:mod:`se3mol.io.tables`), not SMILES files.

:func:`smiles_lines` is the one reading of such lines; the predict readers here and the conformer generator's
inputs (:mod:`se3mol.conformers.inputs`) both use it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator

from se3mol.chem import embed_smiles
from se3mol.io.base import LazyParsed, Parsed

__all__ = ["SMILES_HEADERS", "parse_smiles", "smiles_lines"]

#: A first data line whose SMILES field is one of these (any case) is a column header, not a molecule.
SMILES_HEADERS = ("smiles", "smi", "canonical_smiles")
# What ends the SMILES of a line: one space, tab or comma (ASCII: U+2028 and the like are characters of the name).
_SEPARATOR = re.compile(r"[ \t,]")


def smiles_lines(lines: Iterable[str]) -> Iterator[tuple[int, str, str]]:
    """``(line number, SMILES, name)`` of every molecule line of a SMILES file, line numbers from 1.

    A line holds ``SMILES [name]``: the SMILES up to the first space, tab or comma, the name everything after
    that separator (commas and spaces included), as in .smi files and two-column CSV exports. Blank lines, ``#``
    comments and a header line (:data:`SMILES_HEADERS`) are skipped.

    >>> lines = ["smiles,name\\n", "# a comment\\n", "CCO ethyl alcohol, absolute\\n", "c1ccccc1\\tbenzene ring\\n"]
    >>> list(smiles_lines(lines))
    [(3, 'CCO', 'ethyl alcohol, absolute'), (4, 'c1ccccc1', 'benzene ring')]
    """
    first_data_line = True
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = _SEPARATOR.split(text, maxsplit=1)
        smiles = fields[0]
        name = fields[1].strip() if len(fields) > 1 else ""
        if first_data_line and smiles.lower() in SMILES_HEADERS:
            first_data_line = False
            continue  # a column header, not a molecule
        first_data_line = False
        yield lineno, smiles, name


def parse_smiles(stream: Iterable[str], embed_seed: int) -> Iterator[LazyParsed]:
    """One record per line of :func:`smiles_lines`, embedded in 3D (seed ``embed_seed``) when called."""
    for lineno, smiles, name in smiles_lines(stream):
        yield functools.partial(_smiles_record, smiles, name, lineno, embed_seed)


def _smiles_record(smiles: str, name: str, lineno: int, embed_seed: int) -> Parsed:
    try:
        return Parsed(name=name, molecule=embed_smiles(smiles, seed=embed_seed, name=name), input_smiles=smiles)
    except ValueError as exc:
        return Parsed(name=name, error=f"line {lineno}: {exc}", input_smiles=smiles)
