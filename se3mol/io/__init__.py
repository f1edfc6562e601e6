"""Reading molecules: SDF, XYZ / extended XYZ, SMILES files, CSV / TSV tables of SMILES and any format ASE reads
-> :class:`Record` s, streamed one at a time, a bad record an error record rather than an exception.

One hop of the data path, file -> :class:`~se3mol.molecule.Molecule`. One module per format:

- :mod:`se3mol.io.records`: :class:`Record`, :func:`read_records` (every input, in order, sharded, stdin),
  :func:`read_molecules`.
- :mod:`se3mol.io.formats`: which format a file is (:func:`detect_format`).
- :mod:`se3mol.io.sdf`: SD files (RDKit), missing hydrogens added, 2D depictions re-embedded in 3D.
- :mod:`se3mol.io.xyz`: XYZ / extxyz frames, and every other format through ASE.
- :mod:`se3mol.io.smiles`: SMILES files (one molecule per line), embedded in 3D.
- :mod:`se3mol.io.tables`: CSV / TSV tables with a SMILES column; the other columns pass through.

RDKit helpers (embedding, bond perception, RDKit -> Molecule) live in :mod:`se3mol.chem`; three of them are
re-exported here, where they were first public. Writers live in :mod:`se3mol.writers`.

RDKit explains a failed parse only through its log, which :func:`se3mol.chem.rdkit_messages` intercepts: read
from one thread at a time.
"""

from se3mol.chem import embed_smiles, molecule_from_rdkit, perceive_bonds
from se3mol.io.formats import FORMATS, detect_format
from se3mol.io.records import Record, parse_shard, read_molecules, read_records
from se3mol.io.smiles import smiles_lines
from se3mol.io.tables import CsvOptions, CsvPlan, csv_columns, plan_csv

__all__ = [
    "FORMATS",
    "CsvOptions",
    "CsvPlan",
    "Record",
    "csv_columns",
    "detect_format",
    "embed_smiles",
    "molecule_from_rdkit",
    "parse_shard",
    "perceive_bonds",
    "plan_csv",
    "read_molecules",
    "read_records",
    "smiles_lines",
]
