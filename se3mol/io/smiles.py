"""SMILES files: one molecule per line, ``SMILES [name]``, embedded in 3D (RDKit ETKDG, then MMFF or UFF).

:func:`smiles_lines` is the one reading of such lines; the predict readers here and the conformer generator's
inputs (:mod:`se3mol.conformers.inputs`) both use it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

from se3mol.chem import embed_smiles
from se3mol.io.base import LazyParsed, Parsed

__all__ = ["SMILES_HEADERS", "parse_smiles", "smiles_lines"]

#: A first data line whose SMILES field is one of these (any case) is a column header, not a molecule.
SMILES_HEADERS = ("smiles", "smi", "canonical_smiles")


def smiles_lines(lines: Iterable[str]) -> Iterator[tuple[int, str, str]]:
    """``(line number, SMILES, name)`` of every molecule line of a SMILES file, line numbers from 1.

    A line holds ``SMILES [name]``, separated by a tab, else a comma, else whitespace (as in .smi files and CSV
    exports). Blank lines, ``#`` comments and a header line (:data:`SMILES_HEADERS`) are skipped.

    >>> list(smiles_lines(["smiles,name\\n", "# a comment\\n", "CCO ethanol\\n", "c1ccccc1\\tbenzene ring\\n"]))
    [(3, 'CCO', 'ethanol'), (4, 'c1ccccc1', 'benzene ring')]
    """
    first_data_line = True
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        separator = "\t" if "\t" in text else ("," if "," in text else None)
        fields = text.split(separator, 1)
        smiles = fields[0].strip()
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
        return Parsed(name=name, molecule=embed_smiles(smiles, seed=embed_seed, name=name))
    except ValueError as exc:
        return Parsed(name=name, error=f"line {lineno}: {exc}")
